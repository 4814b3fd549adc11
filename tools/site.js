/* The offline docs site (tools/build_site.py): the menus of small screens, copy buttons, and the search.
   Plain script, no module and no fetch: everything works from file:// as from a server. */
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.remove("no-js");
  root.classList.add("js");

  /* small screens: the chapters and the page's contents fold away behind two buttons */
  function toggle(buttonId, openClass) {
    var b = document.getElementById(buttonId);
    if (!b) return;
    b.addEventListener("click", function () {
      var open = !root.classList.contains(openClass);
      root.classList.toggle(openClass, open);
      b.setAttribute("aria-expanded", String(open));
    });
  }
  toggle("nav-toggle", "nav-open");
  toggle("toc-toggle", "toc-open");
  document.querySelectorAll("#toc a").forEach(function (a) {
    a.addEventListener("click", function () { root.classList.remove("toc-open"); });
  });

  /* a copy button on every code block */
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    var t = document.createElement("textarea");
    t.value = text;
    t.style.position = "fixed";
    t.style.opacity = "0";
    document.body.appendChild(t);
    t.select();
    var ok = document.execCommand("copy");
    t.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }
  document.querySelectorAll("main .cell.markdown pre").forEach(function (pre) {  // a fenced block without a language
    if (pre.closest("div.highlight")) return;
    var wrap = document.createElement("div");
    wrap.className = "highlight";
    pre.parentNode.insertBefore(wrap, pre);
    wrap.appendChild(pre);
  });
  document.querySelectorAll("main div.highlight").forEach(function (block) {
    var pre = block.querySelector("pre");
    if (!pre) return;
    var b = document.createElement("button");
    b.type = "button";
    b.className = "copy-button";
    b.textContent = "Copy";
    b.setAttribute("aria-label", "Copy the code");
    b.addEventListener("click", function () {
      copyText(pre.textContent.replace(/\n$/, "")).then(
        function () { b.textContent = "Copied"; },
        function () { b.textContent = "Copy failed"; });
      setTimeout(function () { b.textContent = "Copy"; }, 1500);
    });
    block.classList.add("has-copy");
    block.insertBefore(b, block.firstChild);
  });

  /* search: the index (search-index.js) and MiniSearch load on first use, by <script> tags */
  var input = document.getElementById("search-input"), list = document.getElementById("search-results");
  if (!input || !list) return;
  var engine = null, loading = null;
  function load(src) {
    return new Promise(function (ok, fail) {
      var s = document.createElement("script");
      s.src = src;
      s.onload = ok;
      s.onerror = function () { fail(new Error("cannot load " + src)); };
      document.head.appendChild(s);
    });
  }
  function tokenize(text) {  // words, and whole identifiers as well as their parts: sample_dpmpp_2m_sde, sample, dpmpp
    var out = [];
    (text.match(/[\p{L}\p{N}_.]+/gu) || []).forEach(function (w) {
      w = w.replace(/^[._]+|[._]+$/g, "");
      if (!w) return;
      out.push(w);
      if (/[._]/.test(w)) w.split(/[._]+/).forEach(function (p) { if (p) out.push(p); });
    });
    return out;
  }
  function ready() {
    if (!loading) {
      loading = Promise.all([load("minisearch.js"), load("search-index.js")]).then(function () {
        engine = new MiniSearch({
          fields: ["title", "text"], storeFields: ["title", "page", "anchor", "ptitle", "api"], tokenize: tokenize,
          searchOptions: { boost: { title: 5 }, prefix: true, fuzzy: 0.15, combineWith: "AND", tokenize: tokenize,
                           boostDocument: function (id, term, stored) { return stored && stored.api ? 1.5 : 1; } },
        });
        engine.addAll(window.SGM_NB_SEARCH);
        root.setAttribute("data-search", "ready");
      }, function (e) { root.setAttribute("data-search", "failed"); list.textContent = String(e.message); list.hidden = false; });
    }
    return loading;
  }
  function show(query) {
    list.innerHTML = "";
    var hits = query.trim() ? engine.search(query).slice(0, 12) : [];
    hits.forEach(function (h) {
      var li = document.createElement("li"), a = document.createElement("a");
      a.href = h.page + (h.anchor ? "#" + h.anchor : "");
      a.innerHTML = "<span class=\"hit-title\"></span><span class=\"hit-page\"></span>";
      a.firstChild.textContent = h.title;
      a.lastChild.textContent = h.ptitle;
      if (h.api) a.classList.add("api");
      li.appendChild(a);
      list.appendChild(li);
    });
    if (query.trim() && !hits.length) list.innerHTML = "<li class=\"none\">No match</li>";
    list.hidden = !query.trim();
    root.setAttribute("data-search-hits", String(hits.length));
  }
  input.addEventListener("focus", ready);
  input.addEventListener("input", function () { ready().then(function () { show(input.value); }); });
  input.addEventListener("keydown", function (e) {
    var first = list.querySelector("a");
    if (e.key === "Enter" && first) { e.preventDefault(); first.click(); }
    if (e.key === "Escape") { list.hidden = true; input.blur(); }
  });
  document.addEventListener("click", function (e) {
    if (!e.target.closest || !e.target.closest(".search")) list.hidden = true;
  });
})();
