#!/usr/bin/env python3
"""Build the offline documentation site `_site/` from nbdev's processed notebooks, without Quarto or network.

    python tools/build_site.py [--out _site] [--no-proc]      (or: make docs)

1. `nbdev.serve.proc_nbs`, the step `nbdev-proc-nbs` runs, writes `_proc/`: show_doc rendered to markdown, `#| hide`
   cells dropped, titles turned into front matter, widget state merged (incremental: only changed notebooks).
2. One HTML page per notebook, named as Quarto names it (front matter `output-file`), the index from nbs/index.ipynb,
   a sidebar listing the chapters in the order and sections of nbs/sidebar.yml, an "On this page" column of the
   page's sections and API entries, the saved figures embedded as data URIs, and links to the online site
   (`site-url` in nbs/nbdev.yml) rewritten to the local pages. Markdown goes through tools/site_markdown.py: formulas
   are kept away from the markdown parser, show_doc entries are rebuilt (literal `*` and `_` in docstrings, the
   signatures nbdev gets wrong mended).
3. Each module of the library gets a highlighted page with numbered lines (`scalings.py.html#L-20`); the API
   entries' source links point there unless the checkout's git remote is the `repo-url` of nbs/nbdev.yml.
4. Search: a MiniSearch (tools/vendor/) over every section and API entry, its documents in `search-index.js`, all
   loaded by plain `<script>` tags so that it works from `file://` as well as from a server.
5. Math is typeset in the browser by the MathJax 2 that PyPI's `jupyter-server-mathjax` ships (a dev dependency),
   copied to `_site/mathjax/`; Debian's libjs-mathjax is the fallback. Nothing on a page loads from the network.

Widgets cannot run without a kernel: a widget output becomes a note pointing at the static picture beside it.
"""

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from nbconvert.filters.ansi import ansi2html
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from site_markdown import md, render_showdoc  # noqa: E402

HERE = Path(__file__).resolve().parent
WIDGET = "application/vnd.jupyter.widget-view+json"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full"  # bundles TeX input and HTML-CSS output; both packages ship it

# ---------------------------------------------------------------------------------------------------- inputs


def find_mathjax() -> Path:
    "The folder holding MathJax.js: PyPI's jupyter-server-mathjax, else Debian's libjs-mathjax."
    try:
        import jupyter_server_mathjax

        cands = [Path(jupyter_server_mathjax.__file__).parent / "static"]
    except ImportError:
        cands = []
    cands.append(Path("/usr/share/javascript/mathjax"))
    for c in cands:
        if (c / "MathJax.js").exists() and (c / "config" / f"{MATHJAX_CONFIG}.js").exists():
            return c
    sys.exit("build_site: no local MathJax found; install the dev dependencies (make venv) or Debian's libjs-mathjax")


def sidebar_entries(contents, section=None):
    "Flatten nbs/sidebar.yml's contents into (section, notebook file) in order."
    for item in contents:
        if isinstance(item, str):
            yield section, item
        elif isinstance(item, dict) and "contents" in item:
            yield from sidebar_entries(item["contents"], item.get("section", section))
        elif isinstance(item, dict) and "href" in item:
            yield section, item["href"]


def front_matter(nb) -> dict:
    "The YAML front matter nbdev writes into the first raw cell, and that cell removed from the notebook."
    cells = nb["cells"]
    if cells and cells[0]["cell_type"] == "raw":
        src = "".join(cells[0]["source"]).strip()
        if src.startswith("---"):
            cells.pop(0)
            return yaml.safe_load(src.strip("-\n ")) or {}
    return {}


def page_name(nb_file: str, meta: dict) -> str:
    "Quarto's page name: the front matter's output-file, else the notebook name without its number prefix."
    return meta.get("output-file") or re.sub(r"^\d+[a-z]?_", "", Path(nb_file).stem) + ".html"


def default_exp(nb_path: Path) -> str | None:
    "The module a notebook exports to (`#| default_exp name`), as `lib.name`."
    m = re.search(r"#\|\s*default_exp\s+([\w.]+)", nb_path.read_text()) if nb_path.exists() else None
    return f"sgm_nb.{m.group(1)}" if m else None


def remote_is(root: Path, repo_url: str) -> bool:
    "Whether the checkout's git remote `origin` is the repository the docs' source links name."
    norm = lambda u: re.sub(r"(\.git)?/*$", "", u.strip()).lower()
    try:
        r = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True, text=True)
    except OSError:
        return False
    return bool(repo_url) and r.returncode == 0 and norm(r.stdout) == norm(repo_url)


# ---------------------------------------------------------------------------------------------------- rendering

_DIRECTIVE = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$")
_HEADING = re.compile(r"<h([1-6])([^>]*)>(.*?)</h\1>", re.S)
_ANCHOR = re.compile(r'<a class="anchor-link"[^>]*>.*?</a>', re.S)
_SOURCE_URL = re.compile(r"/blob/[^/]+/((?:\w+/)*\w+\.py)#L(\d+)$")  # …/blob/main/sgm_nb/scalings.py#L20


def slug(text: str) -> str:
    "Pandoc's identifier for a heading (what Quarto's and show_doc's links point at)."
    s = re.sub(r"<[^>]+>", "", html.unescape(text)).strip().lower()
    s = re.sub(r"[^\w\s.-]", "", s)
    return re.sub(r"\s+", "-", s).lstrip("0123456789._-") or "section"


def source_page(module_file: str) -> str:
    "The site's page of a library file: sgm_nb/scalings.py -> scalings.py.html"
    return module_file.removeprefix("sgm_nb/").replace("/", ".") + ".html"


def local_source_link(url: str) -> str:
    "nbdev's source URL (…/blob/main/sgm_nb/scalings.py#L20) as the site's own page and line."
    m = _SOURCE_URL.search(url)
    return f"{source_page(m.group(1))}#L-{m.group(2)}" if m else url


def directives(src: str):
    "Quarto cell options (`#| echo: false`) and the source without them."
    opts, lines = {}, src.splitlines()
    while lines and _DIRECTIVE.match(lines[0]):
        k, v = _DIRECTIVE.match(lines.pop(0)).groups()
        opts[k] = v.lower()
    return opts, "\n".join(lines)


def _image(data: dict, out: dict, mime: str, text) -> str:
    w = out.get("metadata", {}).get(mime, {}).get("width")
    size = f' width="{int(w)}"' if isinstance(w, (int, float)) else ""
    return (
        f'<div class="output figure"><img class="output-image" alt="figure"{size} '
        f'src="data:{mime};base64,{"".join(text(mime).split())}"></div>'
    )


def render_output(out: dict, ctx: dict) -> str:
    "One output, in nbconvert's order of preference (HTML before markdown: a progress bar is HTML, not source)."
    kind = out["output_type"]
    if kind == "stream":
        return f'<pre class="output stream {out.get("name", "")}">{ansi2html("".join(out["text"]))}</pre>'
    if kind == "error":
        return f'<pre class="output error">{ansi2html(chr(10).join(out["traceback"]))}</pre>'
    data = out.get("data", {})
    text = lambda k: "".join(data[k]) if isinstance(data[k], list) else data[k]
    if WIDGET in data:
        return (
            f'<div class="output widget-note">An interactive widget: it needs a live kernel, so open '
            f"<code>nbs/{html.escape(ctx['nb'])}</code> in Jupyter to use it. The static picture beside it on this "
            f"page shows the same idea over a grid of values.</div>"
        )
    for mime in ("image/png", "image/jpeg", "image/gif"):
        if mime in data:
            return _image(data, out, mime, text)
    if "image/svg+xml" in data:
        return f'<div class="output figure">{text("image/svg+xml")}</div>'
    if "text/html" in data:
        return f'<div class="output html">{text("text/html")}</div>'
    if "text/markdown" in data:
        src = text("text/markdown")
        entry = render_showdoc(src, ctx["module"], ctx["source_link"])
        return entry if entry is not None else f'<div class="output markdown">{md(src)}</div>'
    if "text/latex" in data:
        return f'<div class="output latex">{html.escape(text("text/latex"))}</div>'
    if "text/plain" in data:
        return f'<pre class="output">{html.escape(text("text/plain"))}</pre>'
    return ""


def render_cell(cell: dict, ctx: dict) -> str:
    src = "".join(cell["source"])
    if cell["cell_type"] == "markdown":
        return f'<div class="cell markdown">{md(src)}</div>'
    if cell["cell_type"] == "raw":
        return ""  # raw cells are for other formats (Quarto front matter, LaTeX)
    opts, code = directives(src)
    if opts.get("include") == "false":
        return ""
    parts = []
    if opts.get("echo") != "false" and code.strip():
        parts.append(f'<div class="input">{highlight(code, PythonLexer(), HtmlFormatter(cssclass="highlight"))}</div>')
    if opts.get("output") != "false":
        parts += [render_output(o, ctx) for o in cell.get("outputs", [])]
    return f'<div class="cell code">{"".join(parts)}</div>' if any(parts) else ""


def add_heading_ids(body: str) -> str:
    """Pandoc's ids instead of nbconvert's, so that show_doc's and Quarto's links land. A repeated id gets Pandoc's
    `-1`, `-2`, except that an API entry keeps the plain one (`unet.html#resblock` is the entry for ResBlock, not the
    section about it), as the library's index of symbols expects."""
    heads = list(_HEADING.finditer(body))
    inner = [_ANCHOR.sub("", m.group(3)) for m in heads]
    seen, ids = {}, {}
    for i in sorted(range(len(heads)), key=lambda i: "api-name" not in heads[i].group(2)):
        s = slug(inner[i])
        n = seen.get(s, 0)
        seen[s] = n + 1
        ids[i] = f"{s}-{n}" if n else s
    out, pos = [], 0
    for i, m in enumerate(heads):
        level, cls = m.group(1), re.search(r'class="[^"]*"', m.group(2))
        link = f'<a class="anchor-link" href="#{ids[i]}" aria-hidden="true">¶</a>'
        out += [
            body[pos : m.start()],
            f'<h{level} id="{ids[i]}"{" " + cls.group(0) if cls else ""}>{inner[i]}{link}</h{level}>',
        ]
        pos = m.end()
    return "".join(out) + body[pos:]


def relink(body: str, site_url: str, pages: dict, ids: dict) -> str:
    """Links to the online site and to notebooks become links to the local pages. A link to a method without its own
    show_doc entry (`page.html#class.method`) goes to its class's entry."""

    def sub(m):
        url = m.group(1)
        path, _, frag = url.partition("#")
        if site_url and path.startswith(site_url + "/"):
            path = path[len(site_url) + 1 :]
        path = pages.get(Path(path).name, path) if path.endswith(".ipynb") else path
        if path not in ids:
            return m.group(0)
        if frag not in ids[path] and frag.split(".")[0] in ids[path]:
            frag = frag.split(".")[0]
        return f'href="{path}{"#" + frag if frag else ""}"'

    return re.sub(r'href="([^"]*)"', sub, body)


# ---------------------------------------------------------------------------------------------------- page parts


def nav_html(entries, pages, titles, current):
    out, section = ['<nav id="sidebar" aria-label="chapters"><ul>'], None
    for sec, nb in entries:
        if sec != section:
            if section is not None:
                out.append("</ul></li>")
            if sec is not None:
                out.append(f'<li class="section"><span>{html.escape(sec)}</span><ul>')
            section = sec
        cls = ' class="current" aria-current="page"' if pages[nb] == current else ""
        out.append(f'<li><a href="{pages[nb]}" data-nb="{html.escape(nb)}"{cls}>{html.escape(titles[nb])}</a></li>')
    if section is not None:
        out.append("</ul></li>")
    return "".join(out) + "</ul></nav>"


_SECTION = re.compile(r'<h([2-3]) id="([^"]+)"((?: class="[^"]*")?)>(.*?)</h\1>', re.S)


def heading_text(inner: str) -> str:
    "A heading's text for the contents and the search: links, tags and the anchor mark removed, math kept."
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", _ANCHOR.sub("", inner)))).strip()


def toc_html(body: str) -> str:
    "The 'On this page' column: every h2 (a section) and h3 (a subsection or an API entry) of the page."
    items = []
    for level, hid, cls, inner in _SECTION.findall(body):
        api = ' class="api"' if "api-name" in cls else ""
        items.append(
            f'<li class="toc-h{level}"><a href="#{hid}"{api}>{html.escape(heading_text(inner), quote=False)}</a></li>'
        )
    inner = f"<ul>{''.join(items)}</ul>" if items else '<p class="toc-empty">This page has no sections.</p>'
    return f'<nav id="toc" aria-label="On this page"><h2 class="toc-title">On this page</h2>{inner}</nav>'


PAGE = """<!DOCTYPE html>
<html lang="en" class="no-js">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – {site}</title>
<link rel="stylesheet" href="site.css">
<script type="text/x-mathjax-config">
MathJax.Hub.Config({{
  tex2jax: {{inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
            processEscapes: true, processEnvironments: true}},
  "HTML-CSS": {{availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               linebreaks: {{automatic: true}}}},
  messageStyle: "none", showMathMenu: false
}});
MathJax.Hub.Register.StartupHook("End", function () {{  // the first typesetting is over (tests wait for it)
  document.documentElement.setAttribute("data-mathjax", "done");
}});
</script>
<script src="mathjax/MathJax.js?config={mathjax_config}"></script>
<script src="site.js" defer></script>
</head>
<body>
<header class="site-header">
<button type="button" id="nav-toggle" class="menu-button" aria-controls="sidebar" aria-expanded="false"
>☰ Chapters</button>
<a class="site-title" href="index.html">{site}</a>
<div class="search" role="search"><input id="search-input" type="search" placeholder="Search the book and the API"
 aria-label="Search" autocomplete="off"><ol id="search-results" hidden></ol></div>
<button type="button" id="toc-toggle" class="menu-button" aria-controls="toc" aria-expanded="false"
>On this page</button>
</header>
<div class="layout">
{nav}
<main id="content">
<h1 class="title">{title}</h1>
{description}
{body}
<footer class="pager">{prev}{next}</footer>
</main>
{toc}
</div>
</body>
</html>
"""


def page_html(**kw) -> str:
    return PAGE.format(mathjax_config=MATHJAX_CONFIG, **kw)


# ---------------------------------------------------------------------------------------------------- search

_ANY_HEADING = re.compile(r'<h([1-4]) id="([^"]+)"((?: class="[^"]*")?)>(.*?)</h\1>', re.S)


def plain_text(fragment: str) -> str:
    "What the search indexes of a piece of page: text and code, no tags, images or widget notes; TeX as words."
    fragment = re.sub(r'<div class="output (?:figure|widget-note)">.*?</div>', " ", fragment, flags=re.S)
    fragment = re.sub(r'<a class="(?:anchor-link|source-link)"[^>]*>.*?</a>', " ", fragment, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", " ", fragment))
    text = re.sub(r"\\([A-Za-z]+)", r" \1 ", text).replace("\\", "")
    return re.sub(r"\s+", " ", text).strip()


def search_documents(page: str, title: str, body: str) -> list[dict]:
    "One search document per section of a page (h1-h4 with an id), the text before the first heading as the page."
    docs, cuts = [], list(_ANY_HEADING.finditer(body))
    starts = [(0, "", title, False)] + [(m.end(), m.group(2), heading_text(m.group(4)), "api-name" in m.group(3))
                                        for m in cuts]  # fmt: skip
    ends = [m.start() for m in cuts] + [len(body)]
    for (start, anchor, head, api), end in zip(starts, ends):
        text = plain_text(body[start:end])
        if text or anchor:
            docs.append(dict(id=f"{page}#{anchor}", page=page, anchor=anchor, title=head, ptitle=title, text=text,
                             api=api))  # fmt: skip
    return docs


# ---------------------------------------------------------------------------------------------------- source pages


def write_source_pages(root: Path, out: Path, site: str, chapters: dict) -> list[str]:
    """A page per library file with numbered, linkable lines (`#L-20`); nbdev's cell markers
    (`# %% ../nbs/02_scalings.ipynb #id`) link to the chapter the cell comes from. `chapters`: notebook -> page."""
    fmt = HtmlFormatter(cssclass="highlight source", linenos="inline", lineanchors="L", anchorlinenos=True)
    written = []
    for path in sorted((root / "sgm_nb").glob("*.py")):
        if path.name == "_modidx.py":
            continue
        code = highlight(path.read_text(), PythonLexer(), fmt)

        def marker(m):
            page = chapters.get(m.group(2))
            return f'<a class="cell-marker" href="{page}">{m.group(1)}</a>' if page else m.group(0)

        code = re.sub(r"(# %% \.\./nbs/([\w.-]+\.ipynb)(?: #\w+)?)", marker, code)
        nb = re.search(r"File to edit: \.\./nbs/([\w.-]+\.ipynb)", path.read_text())
        origin = (
            f'<p class="description">Generated from <code>nbs/{nb.group(1)}</code>, the chapter '
            f'<a href="{chapters[nb.group(1)]}">{html.escape(chapters[nb.group(1)])}</a>; edit the notebook, not this '
            f"file.</p>"
            if nb and nb.group(1) in chapters
            else ""
        )
        name = source_page(f"sgm_nb/{path.name}")
        (out / name).write_text(
            page_html(
                title=f"sgm_nb/{html.escape(path.name)}",
                site=html.escape(site),
                nav="",
                description=origin,
                body=f'<div class="source-file">{code}</div>',
                prev="",
                next="",
                toc="",
            )  # fmt: skip
        )
        written.append(name)
    return written


# ---------------------------------------------------------------------------------------------------- build


def load_book(root: Path, proc: bool, n_workers: int) -> dict:
    "nbdev's processing, then the notebooks of nbs/sidebar.yml with their front matter, pages, titles and modules."
    from nbdev.config import get_config

    cfg = get_config(root)
    nbs = Path(cfg.nbs_path)
    if proc:
        from nbdev.serve import proc_nbs

        proc_nbs(str(nbs), n_workers=n_workers)
    cache = Path(cfg.config_path) / "_proc"
    side = yaml.safe_load((nbs / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    site_cfg = (yaml.safe_load((nbs / "nbdev.yml").read_text()) or {}).get("website", {})
    book = dict(entries=list(sidebar_entries(side)), notebooks={}, pages={}, titles={}, modules={})
    book["site"] = site_cfg.get("title", cfg.get("title", "docs"))
    book["site_url"] = site_cfg.get("site-url", "").rstrip("/")
    book["repo_url"] = site_cfg.get("repo-url", "")
    book["remote"] = remote_is(root, book["repo_url"])
    for _, nb_file in book["entries"]:
        nb = json.loads((cache / nb_file).read_text())
        meta = front_matter(nb)
        book["notebooks"][nb_file], book["pages"][nb_file] = (nb, meta), page_name(nb_file, meta)
        book["titles"][nb_file] = "Home" if book["pages"][nb_file] == "index.html" else meta.get("title", nb_file)
        book["modules"][nb_file] = default_exp(nbs / nb_file)
    missing = sorted(p.name for p in cache.glob("*.ipynb") if p.name not in book["pages"])
    if missing:
        print(f"build_site: not in nbs/sidebar.yml, so not built: {', '.join(missing)}", file=sys.stderr)
    return book


def write_assets(out: Path):
    "MathJax, the style sheet (with pygments' colours), the page script and MiniSearch."
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(find_mathjax(), out / "mathjax", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    css = (HERE / "site.css").read_text() + "\n" + HtmlFormatter(style="friendly").get_style_defs(".highlight")
    (out / "site.css").write_text(css)
    shutil.copy(HERE / "site.js", out / "site.js")
    shutil.copy(HERE / "vendor" / "minisearch.js", out / "minisearch.js")


def render_bodies(book: dict) -> dict:
    "Each notebook's page body, headings with Pandoc's ids."
    repo = book["repo_url"].rstrip("/")
    link = (lambda url: url if url.startswith("http") else repo + url) if book["remote"] else local_source_link
    bodies = {}
    for _, nb in book["entries"]:
        ctx = dict(nb=nb, module=book["modules"][nb], source_link=link)
        cells = book["notebooks"][nb][0]["cells"]
        bodies[nb] = add_heading_ids("\n".join(filter(None, (render_cell(c, ctx) for c in cells))))
    return bodies


def write_pages(book: dict, bodies: dict, out: Path) -> list[dict]:
    "The chapter pages; returns their search documents."
    order, pages, titles = [nb for _, nb in book["entries"]], book["pages"], book["titles"]
    ids = {pages[nb]: set(re.findall(r'id="([^"]+)"', bodies[nb])) | {""} for nb in order}
    docs = []
    for i, nb_file in enumerate(order):
        meta = book["notebooks"][nb_file][1]
        link = lambda j, cls, arrow: (
            f'<a class="{cls}" href="{pages[order[j]]}">{arrow}{html.escape(titles[order[j]])}</a>'
            if 0 <= j < len(order)
            else ""
        )
        desc, title = meta.get("description"), meta.get("title", book["site"])
        body = relink(bodies[nb_file], book["site_url"], pages, ids)
        page = page_html(
            title=html.escape(title),
            site=html.escape(book["site"]),
            nav=nav_html(book["entries"], pages, titles, pages[nb_file]),
            description=f'<p class="description">{md(desc).strip()[3:-4]}</p>' if desc else "",
            body=body,
            prev=link(i - 1, "prev", "← "),
            next=link(i + 1, "next", "→ "),
            toc=toc_html(body),
        )
        (out / pages[nb_file]).write_text(page)
        docs += search_documents(pages[nb_file], title, body)
    return docs


def build(root: Path, out: Path, proc: bool = True, n_workers: int = 2) -> dict:
    "Build the site into `out`; returns {notebook file: page name}."
    book = load_book(root, proc, n_workers)
    write_assets(out)
    docs = write_pages(book, render_bodies(book), out)
    write_source_pages(root, out, book["site"], book["pages"])
    (out / "search-index.js").write_text(
        "window.SGM_NB_SEARCH = " + json.dumps(docs, ensure_ascii=False, separators=(",", ":")) + ";\n"
    )
    return book["pages"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path.cwd(), help="project root (holding pyproject.toml)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: ROOT/_site)")
    p.add_argument("--no-proc", action="store_true", help="reuse _proc/ as it is (skip nbdev's processing)")
    p.add_argument("--n-workers", type=int, default=2, help="processes for nbdev's notebook processing")
    a = p.parse_args(argv)
    out = (a.out or a.root / "_site").resolve()
    t0 = time.time()
    pages = build(a.root.resolve(), out, proc=not a.no_proc, n_workers=a.n_workers)
    print(f"build_site: {len(pages)} pages in {out} ({time.time() - t0:.1f} s); open {out / 'index.html'}")


if __name__ == "__main__":
    main()
