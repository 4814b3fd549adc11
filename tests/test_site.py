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
BROWSER_SERVICES = re.compile(r"^(CONNECT |GET http://|POST http://)[a-z0-9-]+\.(google|googleapis)\.com[:/]")
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
  // visible prose: text nodes outside code, scripts and MathJax's own (hidden) copies
  const skip = "pre, code, script, style, .MJX_Assistive_MathML, .anchor-link";
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  const prose = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode())
    if (!n.parentElement.closest(skip) && n.parentElement.getClientRects().length) prose.push(n.textContent);
  return {
    url: location.href, status: performance.getEntriesByType("navigation")[0].responseStatus,
    title: (document.querySelector("h1.title") || {}).textContent || "",
    figures,
    tex: document.querySelectorAll('script[type^="math/tex"]').length,
    // MathJax 2 keeps each formula's TeX in a script and puts its rendering right before it
    typeset: [...document.querySelectorAll('script[type^="math/tex"]')]
               .filter(s => s.previousElementSibling && s.previousElementSibling.matches(".MathJax, .MathJax_Display")
                            && s.previousElementSibling.getBoundingClientRect().width > 0).length,
    errors: document.querySelectorAll(".MathJax_Error, .merror, .noError").length,
    prose: prose.join(""),
    ids: [...document.querySelectorAll("[id]")].map(e => e.id),
    links: [...main.querySelectorAll("a[href]")].map(a => a.href).filter(h => h.startsWith(location.origin)),
    h3: [...main.querySelectorAll("h3")].map(h => ({id: h.id, text: h.textContent.replace("¶", "").trim(),
          next: (h.nextElementSibling || {}).textContent || ""})),
  };
})()"""


@pytest.fixture(scope="module")
def visited(browser):
    "Open the index, then every chapter by clicking its link in the index's navigation; what each page shows."
    cdp, base, proxy = browser
    page = Page(cdp)
    page.goto(base + "index.html")
    page.wait_for("document.documentElement.dataset.mathjax === 'done'")
    nav = page.eval("[...document.querySelectorAll('#sidebar a[data-nb]')].map(a => a.dataset.nb)")
    pages = {"index.ipynb": page.eval(PAGE_JS)}
    for nb in nav:
        if nb == "index.ipynb":
            continue
        page.goto(base + "index.html")
        page.click(f'#sidebar a[data-nb="{nb}"]')
        page.wait_for("document.documentElement.dataset.mathjax === 'done'")
        pages[nb] = page.eval(PAGE_JS)
        if nb == SCALINGS_NB:
            shot = _screenshots(page)
    return {
        "nav": nav,
        "pages": pages,
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
    return page.eval(f"""(() => {{ const y0 = {top}, y1 = {top} + 1150;
        const within = el => {{ const r = el.getBoundingClientRect(), t = r.top + window.scrollY;
                                return r.height > 0 && t >= y0 && t + r.height <= y1; }};
        return {{imgs: [...document.querySelectorAll("main img")].filter(i => within(i) && i.naturalWidth > 0).length,
                 math: [...document.querySelectorAll(".MathJax")].filter(within).length}}; }})()""")


def _png_outputs(nb):
    cells = json.loads((ROOT / "_proc" / nb).read_text())["cells"]
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


# ---------------------------------------------------------------------------------------------------- tests


def test_navigation_lists_every_chapter_in_sidebar_order(visited):
    assert visited["nav"] == _sidebar_order()


def test_every_chapter_loads_from_the_index(visited):
    for nb in _sidebar_order():
        p = visited["pages"][nb]
        assert p["status"] == 200 and p["url"].startswith(visited["base"]), (nb, p["url"], p["status"])
        assert p["title"].strip(), f"{nb}: no title"


def test_local_links_land_on_a_page_and_heading(visited):
    "Every link between pages (show_doc's cross-references included) names a page of the site and an id on it."
    by_url = {p["url"].split("#")[0]: set(p["ids"]) for p in visited["pages"].values()}
    by_url[visited["base"]] = by_url[visited["base"] + "index.html"]

    def lands(url):
        page, _, frag = url.partition("#")
        return page in by_url and (not frag or unquote(frag) in by_url[page])

    broken = [(nb, u) for nb, p in visited["pages"].items() for u in p["links"] if not lands(u)]
    assert not broken, f"{len(broken)} broken local links, e.g. {broken[:10]}"


def test_figures_are_decoded_images(visited):
    for nb, p in visited["pages"].items():
        assert len(p["figures"]) == _png_outputs(nb), f"{nb}: {len(p['figures'])} images, {_png_outputs(nb)} figures"
        bad = [f for f in p["figures"] if not (f["decoded"] and f["w"] > 0 and f["h"] > 0)]
        assert not bad, f"{nb}: images that did not decode: {bad}"
    assert sum(len(p["figures"]) for p in visited["pages"].values()) >= 30


def test_math_is_typeset(visited):
    for nb, p in visited["pages"].items():
        assert p["errors"] == 0, f"{nb}: {p['errors']} formulas MathJax could not typeset"
        assert p["typeset"] == p["tex"], f"{nb}: {p['tex']} formulas, {p['typeset']} typeset"
    s = visited["pages"][SCALINGS_NB]
    assert s["tex"] >= 50, s["tex"]
    assert "$$" not in s["prose"] and "$" not in s["prose"], "raw TeX delimiters left in the scalings page's text"
    for cmd in ("\\sigma", "\\frac", "\\text", "\\sqrt"):
        assert cmd not in s["prose"], f"raw {cmd} in the scalings page's text"


def test_scalings_api_entries(visited):
    from sgm_nb import scalings

    h3 = {h["text"]: h for h in visited["pages"][SCALINGS_NB]["h3"]}
    for name in scalings.__all__:
        assert name in h3, f"no API entry for {name}"
        assert h3[name]["id"] == name.lower() and f"{name}(" in h3[name]["next"], h3[name]


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


def test_screenshot_saved(visited, capsys):
    inside = visited["screenshot"]
    assert inside["imgs"] >= 1 and inside["math"] >= 3, (
        f"the screenshot's frame should hold a figure and math: {inside}"
    )
    for name in ("scalings.png", "scalings_top.png"):
        path = ARTIFACTS / name
        assert path.stat().st_size > 50_000
        with capsys.disabled():
            print(f"\nscreenshot of the scalings page: {path}")
