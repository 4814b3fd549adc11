"""The offline docs site in a real browser: `tools/build_site.py` builds `_site/`, headless Chromium renders it, and
every check reads the rendered DOM through the DevTools protocol (not the HTML source).

Chromium runs with no network: a local recording proxy receives whatever would leave the machine (and refuses it),
host names other than 127.0.0.1 do not resolve, and the DevTools Network events list every request a page makes.
Every request of the site's pages must stay on 127.0.0.1; the browser's own service calls (Chromium pings Google's
update and account services at start-up, whatever the flags) reach only the proxy, which refuses them, and are the
one thing the proxy may see. A control page with outside URLs proves that both detectors see such requests.
Screenshots of the scalings page go to $SGM_NB_ARTIFACTS (default: artifacts/ in the repository, ignored by git).
"""

import functools
import http.server
import json
import os
import re
import shutil
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("CI") == "true":  # CI installs it (.ci/run): a missing browser there is a failure, not a skip
        pytest.fail("chromium is not installed: .ci/run should have run `apt-get install chromium`", pytrace=False)
    pytest.skip(
        "Debian's chromium is not installed (`apt-get install chromium`; .ci/run does it in CI)",
        allow_module_level=True,
    )
websocket = pytest.importorskip("websocket", reason="websocket-client is a dev dependency: run `make venv`")

# Chromium's own calls home (component updater, account check, network time): not the site's, refused by the proxy
BROWSER_SERVICES = re.compile(r"^(CONNECT |GET http://|POST http://)(?:[a-z0-9-]+\.)+(google|googleapis)\.com[:/]")
ARTIFACTS = Path(os.environ.get("SGM_NB_ARTIFACTS") or ROOT / "artifacts")
SCALINGS_NB = "02_scalings.ipynb"
TIMEOUT = 60

# ---------------------------------------------------------------------------------------------------- servers


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class _RecordingProxy(socketserver.ThreadingTCPServer):
    "Chromium's --proxy-server: records the request line of anything headed off the machine and refuses it."

    daemon_threads, allow_reuse_address = True, True

    def __init__(self):
        self.seen = []
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                line = self.rfile.readline(8192).decode("latin-1").strip()
                if line:
                    proxy.seen.append(line)
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        super().__init__(("127.0.0.1", 0), Handler)


def _serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------------------- DevTools


class CDP:
    "A minimal DevTools-protocol client over one browser websocket, with flat sessions per page."

    def __init__(self, url):
        self.ws = websocket.create_connection(url, timeout=TIMEOUT, suppress_origin=True)
        self.n, self.events = 0, []

    def _recv(self):
        m = json.loads(self.ws.recv())
        if "method" in m:
            self.events.append(m)
        return m

    def send(self, method, session=None, **params):
        self.n += 1
        self.ws.send(
            json.dumps(
                {"id": self.n, "method": method, "params": params, **({"sessionId": session} if session else {})}
            )
        )
        while True:
            m = self._recv()
            if m.get("id") == self.n:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def wait_event(self, method, session, since, timeout=TIMEOUT):
        end = time.time() + timeout
        while True:
            for m in self.events[since:]:
                if m["method"] == method and m.get("sessionId") == session:
                    return m
            if time.time() > end:
                raise TimeoutError(f"no {method} within {timeout} s")
            self._recv()

    def requests(self):
        return [m["params"]["request"]["url"] for m in self.events if m["method"] == "Network.requestWillBeSent"]


class Page:
    def __init__(self, cdp, width=1280, height=1000):
        self.cdp = cdp
        target = cdp.send("Target.createTarget", url="about:blank")["targetId"]
        self.sid = cdp.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method, **params):
        return self.cdp.send(method, self.sid, **params)

    def eval(self, expr):
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr[:80]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def _loaded(self, action):
        mark = len(self.cdp.events)
        action()
        self.cdp.wait_event("Page.loadEventFired", self.sid, mark)

    def goto(self, url):
        self._loaded(lambda: self.send("Page.navigate", url=url))

    def click(self, selector):
        self._loaded(lambda: self.eval(f"document.querySelector({json.dumps(selector)}).click()"))

    def wait_for(self, expr, timeout=TIMEOUT):
        end = time.time() + timeout
        while not self.eval(expr):
            if time.time() > end:
                raise TimeoutError(f"{expr} still false after {timeout} s")
            time.sleep(0.1)


def _chromium(user_dir: Path, proxy_port: int):
    args = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--mute-audio",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--no-pings",
        "--metrics-recording-only",
        "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,OptimizationGuideModelDownloading,"
        "OptimizationHintsFetching,MediaRouter,Translate,AutofillServerCommunication",
        f"--user-data-dir={user_dir}",
        "--remote-debugging-port=0",
        f"--proxy-server=http://127.0.0.1:{proxy_port}",  # loopback bypasses it, everything else lands there
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "about:blank",
    ]
    log = open(user_dir.parent / "chromium.log", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    port_file, end = user_dir / "DevToolsActivePort", time.time() + TIMEOUT
    while not (port_file.exists() and len(port_file.read_text().split()) == 2):
        if proc.poll() is not None or time.time() > end:
            proc.kill()
            raise RuntimeError("chromium did not start: " + (user_dir.parent / "chromium.log").read_text()[-3000:])
        time.sleep(0.1)
    port, path = port_file.read_text().split()
    return proc, f"ws://127.0.0.1:{port}{path}"


# ---------------------------------------------------------------------------------------------------- fixtures


def _sidebar_order():
    "nbs/sidebar.yml's notebooks in order, read independently of the builder."

    def walk(items):
        for it in items:
            if isinstance(it, str):
                yield it
            else:
                yield from walk(it.get("contents", []))

    return list(walk(yaml.safe_load((ROOT / "nbs" / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "_site"
    t0 = time.time()
    r = subprocess.run(
        [sys.executable, "tools/build_site.py", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    print(f"site built in {time.time() - t0:.1f} s")
    _write_controls(out)
    return out


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    httpd = _serve(_Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site))))
    proxy = _serve(_RecordingProxy())
    user_dir = tmp_path_factory.mktemp("chromium") / "profile"
    proc, ws = _chromium(user_dir, proxy.server_address[1])
    cdp = CDP(ws)
    try:
        yield cdp, f"http://127.0.0.1:{httpd.server_address[1]}/", proxy
    finally:
        cdp.ws.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        httpd.shutdown()
        proxy.shutdown()


# What each page shows, read from the live DOM once MathJax has finished.
PAGE_JS = r"""(async () => {
  const main = document.querySelector("main");
  const imgs = [...main.querySelectorAll("img")];
  const figures = [];
  for (const img of imgs) {
    let decoded = true;
    try { await img.decode(); } catch (e) { decoded = false; }
    figures.push({decoded, w: img.naturalWidth, h: img.naturalHeight});
  }
  // visible text outside code, scripts and MathJax's hidden copies: prose, and what typeset formulas show
  const hidden = "script, style, .MJX_Assistive_MathML, header", code = "pre, code, .anchor-link, .copy-button";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const prose = [], math = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const p = n.parentElement;
    if (p.closest(hidden) || !p.getClientRects().length) continue;
    if (p.closest(".MathJax, .MathJax_Display")) math.push(n.textContent);
    else if (!p.closest(code)) prose.push(n.textContent);
  }
  const text = e => e ? e.textContent.replace("¶", "").trim() : "";
  return {
    url: location.href, status: performance.getEntriesByType("navigation")[0].responseStatus,
    title: text(document.querySelector("h1.title")),
    figures,
    tex: document.querySelectorAll('script[type^="math/tex"]').length,
    // MathJax 2 keeps each formula's TeX in a script and puts its rendering right before it
    typeset: [...document.querySelectorAll('script[type^="math/tex"]')]
               .filter(s => s.previousElementSibling && s.previousElementSibling.matches(".MathJax, .MathJax_Display")
                            && s.previousElementSibling.getBoundingClientRect().width > 0).length,
    errors: document.querySelectorAll(".MathJax_Error, .merror, .noError").length,
    prose: prose.join(" "), math: math.join(" "),
    ids: [...document.querySelectorAll("[id]")].map(e => e.id),
    links: [...document.querySelectorAll("main a[href], #toc a[href]")].map(a => a.href)
             .filter(h => h.startsWith(location.origin)),
    h3: [...main.querySelectorAll("h3")].map(h => ({id: h.id, text: text(h), next: text(h.nextElementSibling)})),
    api: [...main.querySelectorAll(".api-name")].map(h => ({
      id: h.id, name: text(h), next: text(h.nextElementSibling),
      sig: text(h.parentElement.querySelector(".signature pre")),
      summary: text(h.parentElement.querySelector(".docstring .summary")),
      doclinks: [...h.parentElement.querySelectorAll(".docstring a")].map(a => a.textContent)})),
    toc: [...document.querySelectorAll("#toc a")].map(a => a.getAttribute("href")),
    sections: [...main.querySelectorAll("h2[id], h3[id]")].map(h => h.id),
    code_blocks: main.querySelectorAll(".input pre, .signature pre, .cell.markdown pre").length,
    copyable: [...main.querySelectorAll(".input pre, .signature pre, .cell.markdown pre")]
                .filter(p => p.closest("div.highlight")
                             && p.closest("div.highlight").querySelector(":scope > .copy-button"))
                .length,
  };
})()"""

# At 400 px: nothing wider than the window, the title near the top, the chapters behind a button that opens them.
NARROW_JS = r"""(async () => {
  const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  await frame();  // MathJax lays the formulas out again for the new width, as it would have on a phone
  await new Promise(r => MathJax.Hub.Queue(["Rerender", MathJax.Hub], r));
  const root = document.documentElement, side = document.getElementById("sidebar");
  const wide = [...document.body.querySelectorAll("*")].filter(e => {
      const r = e.getBoundingClientRect(); return r.width > 0 && r.right > root.clientWidth + 1; })
    .filter(e => !e.parentElement.closest("pre, .MathJax_Display, table, .output, #search-results, .highlight"));
  const out = {width: root.clientWidth, scroll_width: root.scrollWidth,
               wide: wide.slice(0, 5).map(e => e.outerHTML.slice(0, 120)),
               title_top: document.querySelector("h1.title").getBoundingClientRect().top + window.scrollY,
               sidebar_shown: !!side && side.getClientRects().length > 0};
  const toggle = document.getElementById("nav-toggle");
  if (toggle && toggle.getClientRects().length) { toggle.click(); await frame();
    out.opens = !!side && side.getClientRects().length > 0 && side.getBoundingClientRect().height > 100;
    toggle.click(); await frame(); }
  return out;
})()"""


def _narrow(page):
    page.send("Emulation.setDeviceMetricsOverride", width=400, height=800, deviceScaleFactor=1, mobile=False)
    try:
        return page.eval(NARROW_JS)
    finally:
        page.send("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False)


def _open(page, url):
    page.goto(url)
    if page.eval('performance.getEntriesByType("navigation")[0].responseStatus') != 200:
        return {"url": url, "status": "missing", "ids": [], "links": []}
    try:
        page.wait_for("document.documentElement.dataset.mathjax === 'done'")
    except TimeoutError as e:
        raise TimeoutError(f"{url}: {e}") from None
    info = page.eval(PAGE_JS)
    info["narrow"] = _narrow(page)
    return info


@pytest.fixture(scope="module")
def visited(browser):
    "Open the index, then every chapter by clicking its link in the index's navigation; what each page shows."
    cdp, base, proxy = browser
    page = Page(cdp)
    page.goto(base + "index.html")
    page.wait_for("document.documentElement.dataset.mathjax === 'done'")
    nav = page.eval("[...document.querySelectorAll('#sidebar a[data-nb]')].map(a => a.dataset.nb)")
    pages = {"index.ipynb": _open(page, base + "index.html")}
    for nb in nav:
        if nb == "index.ipynb":
            continue
        page.goto(base + "index.html")
        page.click(f'#sidebar a[data-nb="{nb}"]')
        page.wait_for("document.documentElement.dataset.mathjax === 'done'")
        pages[nb] = page.eval(PAGE_JS)
        if nb == SCALINGS_NB:
            shot = _screenshots(page)
            copy = _copy_check(page)
        pages[nb]["narrow"] = _narrow(page)
    linked = {u.split("#")[0] for p in pages.values() for u in p["links"]} - {
        p["url"].split("#")[0] for p in pages.values()
    }
    others = {u: _open(page, u) for u in sorted(linked) if not u.rstrip("/") + "/" == base}  # source pages
    control = _open(page, base + CONTROL)
    return {
        "nav": nav,
        "pages": pages,
        "others": others,
        "control": control,
        "control_copy": _copy_check(page),
        "copy": copy,
        "requests": cdp.requests(),
        "proxied": list(proxy.seen),
        "base": base,
        "screenshot": shot,
    }


def _screenshots(page):
    "The scalings page: its top (title, math, API) and the coefficient plot with the math around it."
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    import base64

    top = page.eval("""(() => { const h = [...document.querySelectorAll("main h2")]
                          .find(h => h.id.startsWith("the-four-coefficients"));
                          return h.getBoundingClientRect().top + window.scrollY - 10; })()""")
    for name, y in (("scalings.png", top), ("scalings_top.png", 0)):
        shot = page.send(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": y, "width": 1280, "height": 1150, "scale": 1},
        )
        (ARTIFACTS / name).write_bytes(base64.b64decode(shot["data"]))
    # what the first screenshot holds, from the DOM: decoded figures and typeset formulas inside its frame
    inside = page.eval(f"""(() => {{ const y0 = {top}, y1 = {top} + 1150;
        const within = el => {{ const r = el.getBoundingClientRect(), t = r.top + window.scrollY;
                                return r.height > 0 && t >= y0 && t + r.height <= y1; }};
        return {{imgs: [...document.querySelectorAll("main img")].filter(i => within(i) && i.naturalWidth > 0).length,
                 math: [...document.querySelectorAll(".MathJax")].filter(within).length}}; }})()""")
    page.send("Emulation.setDeviceMetricsOverride", width=400, height=800, deviceScaleFactor=1, mobile=False)
    page.eval('new Promise(r => MathJax.Hub.Queue(["Rerender", MathJax.Hub], r))')  # laid out as a phone would
    shot = page.send(
        "Page.captureScreenshot", format="png", clip={"x": 0, "y": 0, "width": 400, "height": 800, "scale": 1}
    )
    (ARTIFACTS / "scalings_400px.png").write_bytes(base64.b64decode(shot["data"]))
    page.send("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False)
    return inside


COPY_JS = r"""(async () => {
  const pre = document.querySelector("main .input pre, main .signature pre");
  const block = pre && pre.closest("div.highlight"), button = block && block.querySelector(":scope > .copy-button");
  if (!button) return {error: "the first code block has no copy button"};
  let copied = null;
  Object.defineProperty(navigator, "clipboard", {configurable: true,
    value: {writeText: t => { copied = t; return Promise.resolve(); }}});
  button.click();
  await new Promise(r => setTimeout(r, 50));
  return {copied, code: pre.textContent.replace(/\n$/, ""), label: button.textContent};
})()"""


def _copy_check(page):
    return page.eval(COPY_JS)


# ---------------------------------------------------------------------------------------------------- the control pages

CONTROL = "control-broken.html"  # a chapter page with one deliberate defect for every check below
CONTROL_NB = SCALINGS_NB
CONTROL_DEFECTS = [
    # raw TeX in prose (MathJax told to leave it), and a formula whose TeX shows a stray backslash
    (
        '<div class="cell markdown">',
        '<div class="cell markdown"><p class="tex2jax_ignore">raw $\\sigma$ and \\frac{1}{2}</p>'
        "<p>$\\text{max\\_period}$</p>",
        1,
    ),
    # HTML printed as text
    (
        '<div class="cell markdown">',
        '<div class="cell markdown"><p>&lt;div&gt;&lt;progress max="10"&gt;&lt;/progress&gt;</p>',
        1,
    ),
    # a figure that does not decode
    (
        '<div class="cell markdown">',
        '<div class="cell markdown"><img alt="figure" src="data:image/png;base64,iVBORw0KGgo=">',
        1,
    ),
    # a code block without a copy button, first on the page
    (
        '<div class="cell markdown">',
        '<div class="cell code"><div class="input"><pre>print("no button")</pre></div></div>'
        '<div class="cell markdown">',
        1,
    ),
    # an element wider than a phone
    ("</main>", '<div style="width: 900px">a wide block</div></main>', 1),
    # the chapters that never fold away at 400 px
    ("</head>", "<style>#sidebar { display: block !important; position: static !important; }</style></head>", 1),
]


def _control_html(html_text: str) -> str:
    for old, new, count in CONTROL_DEFECTS:
        assert old in html_text, old
        html_text = html_text.replace(old, new, count)
    # API: an entry gone, a signature of nbdev's (*args, **kwargs), a docstring that lost its `*`, a parameter linked
    html_text = re.sub(r'<div class="api-entry">(?:(?!<div class="api-entry">).)*?id="vscaling".*?</div></div>', "",
                       html_text, count=1, flags=re.S)  # fmt: skip
    html_text = re.sub(r'(id="epsscaling".*?<div class="signature">.*?<pre>).*?</pre>',
                       r"\1def EpsScaling(\n    *args, **kwargs\n):</pre>", html_text, count=1, flags=re.S)  # fmt: skip
    linked = r'\1<a href="x.html"><code>sigma_data</code></a> '
    html_text = re.sub(r'(id="edmscaling".*?<p class="summary"><em>)', linked, html_text, count=1, flags=re.S)
    html_text = re.sub(r'(id="denoiserscaling".*?<p class="summary"><em>)', r"\1a*b ", html_text, count=1, flags=re.S)
    # the contents: its last entry gone
    return re.sub(
        r'<li class="toc-h\d"><a href="#[^"]*"[^>]*>[^<]*</a></li></ul></nav>', "</ul></nav>", html_text, count=1
    )


def _write_controls(site: Path):
    scalings = json.loads((ROOT / "_proc" / CONTROL_NB).read_text())  # noqa: F841  (built by the site fixture)
    (site / CONTROL).write_text(_control_html((site / "scalings.html").read_text()))
    # a search whose index lost the entries the queries look for
    ctl = site / "control-search"
    ctl.mkdir()
    for f in ("index.html", "site.js", "site.css", "minisearch.js"):
        shutil.copy(site / f, ctl / f)
    (ctl / "mathjax").symlink_to(site / "mathjax")
    index = (site / "search-index.js").read_text()
    docs = json.loads(index[index.index("[") : index.rindex("]") + 1])
    kept = [d for d in docs if d["anchor"] not in {a for _, _, a in SEARCHES}]
    (ctl / "search-index.js").write_text("window.SGM_NB_SEARCH = " + json.dumps(kept) + ";\n")


# ---------------------------------------------------------------------------------------------------- checks
# Each returns the problems it sees on one page (an empty list: none). Every real page must have none; the control
# page must make every one of them report something.

_RAW_TEX = re.compile(r"\$|\\[A-Za-z]+|\\[_{}\[\]()-]")
# an HTML element shown as text (a docstring's `configs/<name>.yaml` is not one)
_TAGS = "a|b|i|p|br|hr|em|strong|code|pre|div|span|img|svg|table|thead|tbody|tr|td|th|ul|ol|li|h[1-6]|sup|sub|progress"
_RAW_HTML = re.compile(rf"</?(?:{_TAGS}|script|style|iframe|input|button|details|summary|blockquote)\b[^<>]*/?>", re.I)


def check_tex(p) -> list[str]:
    out = [f"{p['errors']} formulas MathJax could not typeset"] if p["errors"] else []
    out += [f"{p['tex']} formulas, {p['typeset']} typeset"] if p["typeset"] != p["tex"] else []
    out += [f"raw TeX in the text: …{_context(p['prose'], m)}…" for m in list(_RAW_TEX.finditer(p["prose"]))[:5]]
    out += [
        f"a backslash in a typeset formula: …{_context(p['math'], m)}…" for m in list(re.finditer(r"\\", p["math"]))[:5]
    ]
    return out


def check_html(p) -> list[str]:
    return [f"HTML shown as text: …{_context(p['prose'], m)}…" for m in list(_RAW_HTML.finditer(p["prose"]))[:5]]


def check_figures(p, nb) -> list[str]:
    out = [f"{len(p['figures'])} images, {_png_outputs(nb)} figures"] if len(p["figures"]) != _png_outputs(nb) else []
    return out + [
        f"an image that did not decode: {f}" for f in p["figures"] if not (f["decoded"] and f["w"] and f["h"])
    ]


def check_api(p, nb) -> list[str]:
    "Every name of the module's __all__ that the notebook documents has its entry, with the library's signature."
    entries, out = {e["name"]: e for e in p["api"]}, []
    for name, obj in expected_api(nb).items():
        e = entries.get(name)
        if e is None or e["id"] != slug(name) or f"{name}(" not in e["next"]:
            out.append(f"no API entry for {name}: {e}")
            continue
        shown, real = _shown_params(e["sig"]), _real_params(obj)
        if real is not None and shown != real:
            out.append(f"{name}: the signature shows {shown}, the library has {real}")
        out += [f"{name}: its parameter `{t}` links elsewhere" for t in e["doclinks"] if t in (real or [])]
        want = _summary(obj)
        if want is not None and e["summary"] != want:
            out.append(f"{name}: the docstring reads {e['summary']!r}, the code says {want!r}")
    out += [f"'__main__.' in a signature: {e['name']}" for e in p["api"] if "__main__." in e["sig"]]
    return out


def check_toc(p) -> list[str]:
    "'On this page' lists every section and subsection (h2, h3) of the page, in order."
    want = ["#" + s for s in p["sections"]]
    return [] if p["toc"] == want else [f"the contents list {len(p['toc'])} of {len(want)} sections: "
                                        f"missing {[w for w in want if w not in p['toc']][:5]}"]  # fmt: skip


def check_narrow(p) -> list[str]:
    n, out = p["narrow"], []
    if n["scroll_width"] > n["width"]:
        out.append(f"wider than 400 px: scrollWidth {n['scroll_width']} > {n['width']}; {n['wide']}")
    if n["title_top"] > 300 or n["sidebar_shown"]:
        out.append(f"the chapters do not fold away: title at y = {n['title_top']}, sidebar shown: {n['sidebar_shown']}")
    if not n.get("opens"):
        out.append("the Chapters button does not open the chapters")
    return out


def check_copy(c) -> list[str]:
    if "error" in c:
        return [c["error"]]
    return [] if c["copied"] == c["code"] and c["code"] else [f"copied {c['copied']!r}, the block holds {c['code']!r}"]


def _context(text, m, width=40):
    return text[max(0, m.start() - width) : m.end() + width].replace("\n", " ")


def _png_outputs(nb):
    cells = json.loads((ROOT / "_proc" / nb).read_text())["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


def slug(name):
    return re.sub(r"[^\w.-]", "", name.lower())


def documented(nb) -> list[str]:
    "The names the notebook's show_doc calls document (their headings in nbdev's processed notebook)."
    names = []
    for c in json.loads((ROOT / "_proc" / nb).read_text())["cells"]:
        for o in c.get("outputs", []):
            m = re.match(
                r"---\n\n(?:\[source\][^\n]*\n\n)?#{1,6} ([^\n]+)\n",
                "".join(o.get("data", {}).get("text/markdown", "")),
            )
            names += [m.group(1).strip()] if m else []
    return names


@functools.cache
def expected_api(nb) -> dict:
    "{name: object} of the module's __all__ that the notebook documents (its module: `#| default_exp`)."
    m = re.search(r"#\|\s*default_exp\s+([\w.]+)", (ROOT / "nbs" / nb).read_text())
    if not m:
        return {}
    import importlib

    mod = importlib.import_module(f"sgm_nb.{m.group(1)}")
    docs = set(documented(nb))
    return {n: getattr(mod, n) for n in mod.__all__ if n in docs}


def _shown_params(sig: str):
    import ast

    try:
        fn = ast.parse(sig.strip() + "\n    pass").body[0]
    except SyntaxError:
        return f"an unreadable signature {sig!r}"
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args] + (["*" + a.vararg.arg] if a.vararg else [])
    names += [x.arg for x in a.kwonlyargs] + (["**" + a.kwarg.arg] if a.kwarg else [])
    return [n for n in names if n != "self"]


def _real_params(obj):
    import inspect

    if not callable(obj):
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    star = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [star.get(p.kind, "") + n for n, p in sig.parameters.items() if n != "self"]


def _summary(obj):
    "The docstring's first line as a reader should see it: code marks and links gone, no math (typeset differently)."
    import inspect

    doc = (inspect.getdoc(obj) or "").strip().splitlines()
    if not doc or "$" in doc[0] or "\\" in doc[0]:
        return None
    return re.sub(r"\[`([^`]+)`\]\([^)]*\)", r"\1", doc[0]).replace("`", "")


# ---------------------------------------------------------------------------------------------------- tests


def test_navigation_lists_every_chapter_in_sidebar_order(visited):
    assert visited["nav"] == _sidebar_order()


def test_every_chapter_loads_from_the_index(visited):
    for nb in _sidebar_order():
        p = visited["pages"][nb]
        assert p["status"] == 200 and p["url"].startswith(visited["base"]), (nb, p["url"], p["status"])
        assert p["title"].strip(), f"{nb}: no title"


def test_local_links_land_on_a_page_and_heading(visited):
    "Every link between pages (show_doc's cross-references and source links included) names a page and an id on it."
    seen = list(visited["pages"].values()) + list(visited["others"].values())
    by_url = {p["url"].split("#")[0]: set(p["ids"]) for p in seen}
    by_url[visited["base"]] = by_url[visited["base"] + "index.html"]

    def lands(url):
        page, _, frag = url.partition("#")
        return page in by_url and (not frag or unquote(frag) in by_url[page])

    broken = [(p["url"], u) for p in seen for u in p["links"] if not lands(u)]
    assert not broken, f"{len(broken)} broken local links, e.g. {broken[:10]}"
    assert any(".py.html#L-" in u for p in seen for u in p["links"]), "no source link to the site's own source pages"


def _every_page(visited, check, *nb_arg):
    problems = {nb: check(p, *([nb] if nb_arg else [])) for nb, p in visited["pages"].items()}
    return {nb: v for nb, v in problems.items() if v}


@pytest.mark.parametrize(
    "name, check, per_nb",
    [("tex", check_tex, False), ("html", check_html, False), ("figures", check_figures, True),
     ("api", check_api, True), ("toc", check_toc, False), ("narrow", check_narrow, False)],
)  # fmt: skip
def test_every_page(visited, name, check, per_nb):
    "No raw TeX, no HTML as text, every figure decoded, every API entry, the contents, 400 px: on every page."
    bad = _every_page(visited, check, *([True] if per_nb else []))
    assert not bad, f"{name}: " + "; ".join(f"{nb}: {v[:3]}" for nb, v in bad.items())
    control = check(visited["control"], *([CONTROL_NB] if per_nb else []))
    assert control, f"{name}: the control page ({CONTROL}) has this check's defect, and the check did not see it"


def test_control_page_fails_each_api_check(visited):
    problems = " ".join(check_api(visited["control"], CONTROL_NB))
    for what in (
        "no API entry for VScaling",
        "EpsScaling: the signature",
        "parameter `sigma_data`",
        "DenoiserScaling: the doc",
    ):
        assert what in problems, (what, problems)


def test_api_entries_read_as_the_code(visited):
    "Classes without an __init__ of their own show the signature inspect gives; docstrings keep their `*` and `_`."
    unet = {e["name"]: e for e in visited["pages"]["09_unet.ipynb"]["api"]}
    assert "mult*dim" in unet["FeedForward"]["summary"] and "2*dim_out" in unet["GEGLU"]["summary"]
    eps = {e["name"]: e for e in visited["pages"][SCALINGS_NB]["api"]}["EpsScaling"]
    assert "*args" not in eps["sig"], eps["sig"]
    assert sum(len(p["api"]) for p in visited["pages"].values()) >= 100


def test_math_is_typeset(visited):
    s = visited["pages"][SCALINGS_NB]
    assert s["tex"] >= 50, s["tex"]
    assert sum(p["tex"] for p in visited["pages"].values()) >= 1000


def test_figures_are_many(visited):
    assert sum(len(p["figures"]) for p in visited["pages"].values()) >= 30


def test_code_blocks_have_a_copy_button(visited):
    for nb, p in visited["pages"].items():
        assert p["copyable"] == p["code_blocks"], (
            f"{nb}: {p['code_blocks'] - p['copyable']} code blocks cannot be copied"
        )
    assert not check_copy(visited["copy"]), visited["copy"]
    assert check_copy(visited["control_copy"]), "the control page's first code block has no button: the check must fail"
    c = visited["control"]
    assert c["copyable"] < c["code_blocks"]


def test_no_request_leaves_the_machine(visited):
    reqs = visited["requests"]
    assert any(u.endswith("/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full") for u in reqs), reqs[:20]
    outside = [u for u in reqs if not u.startswith((visited["base"], "data:", "about:", "blob:"))]
    assert not outside, f"requests off the machine: {outside[:10]}"
    others = [line for line in visited["proxied"] if not BROWSER_SERVICES.match(line)]
    assert not others, f"chromium tried to reach: {others[:10]}"


def test_the_network_checks_can_fail(browser, visited):
    "A control page with an outside image and script: both detectors must see them (the proxy refuses them)."
    cdp, base, proxy = browser
    page, n_req, n_proxy = Page(cdp), len(cdp.requests()), len(proxy.seen)
    html = (
        '<img src="http://cdn.example.invalid/figure.png">'
        '<script src="https://cdn.example.invalid/mathjax.js"></script>'
    )
    page.goto("data:text/html," + html)
    end = time.time() + 20
    while len(proxy.seen) < n_proxy + 2 and time.time() < end:
        time.sleep(0.1)
    new = cdp.requests()[n_req:]
    assert "http://cdn.example.invalid/figure.png" in new and "https://cdn.example.invalid/mathjax.js" in new, new
    seen = [line for line in proxy.seen[n_proxy:] if not BROWSER_SERVICES.match(line)]
    assert any("cdn.example.invalid" in line for line in seen), seen


# ---------------------------------------------------------------------------------------------------- search

# (query, page, anchor): a symbol, and the word that names a formula
SEARCHES = [
    ("sample_dpmpp_2m_sde", "samplers.html", "sample_dpmpp_2m_sde"),
    ("VScalingWithEDMcNoise", "scalings.html", "vscalingwithedmcnoise"),
    ("Tweedie", "tweedie.html", "tweedies-formula-step-by-step"),  # the chapter that derives it
]

SEARCH_JS = r"""(async (query) => {
  const input = document.getElementById("search-input");
  input.focus();
  input.value = query;
  input.dispatchEvent(new Event("input"));
  for (let i = 0; i < 200; i++) {
    const state = document.documentElement.dataset.search;
    if (state === "failed") return {error: "the search did not load"};
    if (state === "ready" && document.querySelector("#search-results li")) break;
    await new Promise(r => setTimeout(r, 50));
  }
  const first = document.querySelector("#search-results a");
  if (!first) return {error: "no result"};
  const href = first.href;
  setTimeout(() => first.click(), 0);
  return {href};
})"""


def search_lands(page, start_url, query, want_page, want_anchor) -> list[str]:
    "Type `query` into the search box of `start_url`, follow the first result: the problems with where it lands."
    page.goto(start_url)
    r = page.eval(f"{SEARCH_JS}({json.dumps(query)})")
    if "error" in r:
        return [f"{query!r}: {r['error']}"]
    end = time.time() + TIMEOUT
    while time.time() < end:
        try:
            at = page.eval("[location.href, document.readyState, !!document.getElementById(location.hash.slice(1))]")
        except RuntimeError:  # the page is changing
            at = None
        if at and at[1] == "complete" and at[0] != start_url:
            break
        time.sleep(0.1)
    path, _, frag = (at[0] if at else "").partition("#")
    if not (path.endswith("/" + want_page) and unquote(frag) == want_anchor and at[2]):
        return [f"{query!r} led to {at}, not {want_page}#{want_anchor}"]
    return []


@pytest.mark.parametrize("scheme", ["http", "file"])
def test_search_lands_on_the_page_and_anchor(browser, site, scheme):
    "From python -m http.server's kind of server and from file://: a symbol and a formula's name find their place."
    cdp, base, _ = browser
    page = Page(cdp)
    start = (base if scheme == "http" else site.as_uri() + "/") + "index.html"
    problems = [p for q, pg, a in SEARCHES for p in search_lands(page, start, q, pg, a)]
    assert not problems, problems
    ctl = (base if scheme == "http" else site.as_uri() + "/") + "control-search/index.html"
    control = [p for q, pg, a in SEARCHES for p in search_lands(page, ctl, q, pg, a)]
    assert len(control) == len(SEARCHES), f"the control index lacks these entries, yet the search found them: {control}"


def test_screenshot_saved(visited, capsys):
    inside = visited["screenshot"]
    assert inside["imgs"] >= 1 and inside["math"] >= 3, (
        f"the screenshot's frame should hold a figure and math: {inside}"
    )
    for name in ("scalings.png", "scalings_top.png", "scalings_400px.png"):
        path = ARTIFACTS / name
        assert path.stat().st_size > 20_000
        with capsys.disabled():
            print(f"\nscreenshot of the scalings page: {path}")
