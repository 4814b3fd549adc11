#!/usr/bin/env python3
"""Build the offline documentation site `_site/` from nbdev's processed notebooks, without Quarto or network.

    python tools/build_site.py [--out _site] [--no-proc]      (or: make docs)

1. `nbdev.serve.proc_nbs`, the step `nbdev-proc-nbs` runs, writes `_proc/`: show_doc rendered to markdown, `#| hide`
   cells dropped, titles turned into front matter, widget state merged (incremental: only changed notebooks).
2. One HTML page per notebook, named as Quarto names it (front matter `output-file`), the index from nbs/index.ipynb,
   a sidebar listing the chapters in the order and sections of nbs/sidebar.yml, the saved figures embedded as data
   URIs, and links to the online site (`site-url` in nbs/nbdev.yml) rewritten to the local pages.
3. Math is typeset in the browser by the MathJax 2 that PyPI's `jupyter-server-mathjax` ships (a dev dependency),
   copied to `_site/mathjax/`; Debian's libjs-mathjax is the fallback. Nothing on a page loads from the network.

Widgets cannot run without a kernel: a widget output becomes a note pointing at the static picture beside it.
"""

import argparse
import html
import json
import re
import shutil
import sys
import time
from pathlib import Path

import yaml
from nbconvert.filters.ansi import ansi2html
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

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


# ---------------------------------------------------------------------------------------------------- rendering

_PANDOC_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)\{([^}]*)\}")  # [text](url){target="_blank" ...}
_DIRECTIVE = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*?)\s*$")
_HEADING = re.compile(r"<h([1-6])[^>]*>(.*?)</h\1>", re.S)
_ANCHOR = re.compile(r'<a class="anchor-link"[^>]*>.*?</a>', re.S)


def slug(text: str) -> str:
    "Pandoc's identifier for a heading (what Quarto's and show_doc's links point at)."
    s = re.sub(r"<[^>]+>", "", html.unescape(text)).strip().lower()
    s = re.sub(r"[^\w\s.-]", "", s)
    return re.sub(r"\s+", "-", s).lstrip("0123456789._-") or "section"


def md(text: str) -> str:
    "Markdown with math left for MathJax; Pandoc's link attributes (nbdev's source links) become HTML."

    def link(m):
        attrs = re.sub(r"(\w[\w-]*)=", r" \1=", m.group(3)).strip()
        return f'<a href="{html.escape(m.group(2))}" {attrs}>{m.group(1)}</a>'

    return markdown2html_mistune(_PANDOC_LINK.sub(link, text))


def directives(src: str):
    "Quarto cell options (`#| echo: false`) and the source without them."
    opts, lines = {}, src.splitlines()
    while lines and _DIRECTIVE.match(lines[0]):
        k, v = _DIRECTIVE.match(lines.pop(0)).groups()
        opts[k] = v.lower()
    return opts, "\n".join(lines)


def render_output(out: dict, nb_file: str) -> str:
    kind = out["output_type"]
    if kind == "stream":
        return f'<pre class="output stream {out.get("name", "")}">{ansi2html("".join(out["text"]))}</pre>'
    if kind == "error":
        return f'<pre class="output error">{ansi2html(chr(10).join(out["traceback"]))}</pre>'
    data = out.get("data", {})
    j = lambda k: "".join(data[k]) if isinstance(data[k], list) else data[k]
    if WIDGET in data:
        return (
            f'<div class="output widget-note">An interactive widget: it needs a live kernel, so open '
            f"<code>nbs/{html.escape(nb_file)}</code> in Jupyter to use it. The static picture beside it on this "
            f"page shows the same idea over a grid of values.</div>"
        )
    for mime in ("image/png", "image/jpeg", "image/gif"):
        if mime in data:
            w = out.get("metadata", {}).get(mime, {}).get("width")
            size = f' width="{int(w)}"' if isinstance(w, (int, float)) else ""
            return (
                f'<div class="output figure"><img class="output-image" alt="figure"{size} '
                f'src="data:{mime};base64,{"".join(j(mime).split())}"></div>'
            )
    if "image/svg+xml" in data:
        return f'<div class="output figure">{j("image/svg+xml")}</div>'
    if "text/markdown" in data:
        return f'<div class="output markdown">{md(j("text/markdown"))}</div>'
    if "text/html" in data:
        return f'<div class="output html">{j("text/html")}</div>'
    if "text/latex" in data:
        return f'<div class="output latex">{html.escape(j("text/latex"))}</div>'
    if "text/plain" in data:
        return f'<pre class="output">{html.escape(j("text/plain"))}</pre>'
    return ""


def render_cell(cell: dict, nb_file: str) -> str:
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
        parts += [render_output(o, nb_file) for o in cell.get("outputs", [])]
    return f'<div class="cell code">{"".join(parts)}</div>' if any(parts) else ""


def add_heading_ids(body: str) -> str:
    seen = {}

    def sub(m):  # Pandoc's ids instead of nbconvert's, so that show_doc's and Quarto's links land
        inner = _ANCHOR.sub("", m.group(2))
        s = slug(inner)
        n = seen.get(s, 0)
        seen[s] = n + 1
        s = f"{s}-{n}" if n else s
        link = f'<a class="anchor-link" href="#{s}" aria-hidden="true">¶</a>'
        return f'<h{m.group(1)} id="{s}">{inner}{link}</h{m.group(1)}>'

    return _HEADING.sub(sub, body)


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


# ---------------------------------------------------------------------------------------------------- page


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


PAGE = """<!DOCTYPE html>
<html lang="en">
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
</head>
<body>
<header><a class="site-title" href="index.html">{site}</a></header>
<div class="layout">
{nav}
<main id="content">
<h1 class="title">{title}</h1>
{description}
{body}
<footer class="pager">{prev}{next}</footer>
</main>
</div>
</body>
</html>
"""


def build(root: Path, out: Path, proc: bool = True, n_workers: int = 2) -> dict:
    "Build the site into `out`; returns {notebook file: page name}."
    from nbdev.config import get_config

    cfg = get_config(root)
    nbs = Path(cfg.nbs_path)
    if proc:
        from nbdev.serve import proc_nbs

        proc_nbs(str(nbs), n_workers=n_workers)
    cache = Path(cfg.config_path) / "_proc"
    side = yaml.safe_load((nbs / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    entries = list(sidebar_entries(side))
    site_cfg = (yaml.safe_load((nbs / "nbdev.yml").read_text()) or {}).get("website", {})
    site, site_url = site_cfg.get("title", cfg.get("title", "docs")), site_cfg.get("site-url", "").rstrip("/")

    notebooks, pages, titles = {}, {}, {}
    for _, nb_file in entries:
        nb = json.loads((cache / nb_file).read_text())
        meta = front_matter(nb)
        notebooks[nb_file], pages[nb_file] = (nb, meta), page_name(nb_file, meta)
        titles[nb_file] = "Home" if pages[nb_file] == "index.html" else meta.get("title", Path(nb_file).stem)
    missing = sorted(p.name for p in cache.glob("*.ipynb") if p.name not in pages)
    if missing:
        print(f"build_site: not in nbs/sidebar.yml, so not built: {', '.join(missing)}", file=sys.stderr)

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copytree(find_mathjax(), out / "mathjax", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    css = (HERE / "site.css").read_text() + "\n" + HtmlFormatter(style="friendly").get_style_defs(".highlight")
    (out / "site.css").write_text(css)

    order = [nb for _, nb in entries]
    bodies = {
        nb: add_heading_ids("\n".join(filter(None, (render_cell(c, nb) for c in notebooks[nb][0]["cells"]))))
        for nb in order
    }
    ids = {pages[nb]: set(re.findall(r'id="([^"]+)"', bodies[nb])) | {""} for nb in order}
    for i, nb_file in enumerate(order):
        nb, meta = notebooks[nb_file]
        link = lambda j, cls, arrow: (
            f'<a class="{cls}" href="{pages[order[j]]}">{arrow}{html.escape(titles[order[j]])}</a>'
            if 0 <= j < len(order)
            else ""
        )
        desc = meta.get("description")
        page = PAGE.format(
            title=html.escape(meta.get("title", site)),
            site=html.escape(site),
            mathjax_config=MATHJAX_CONFIG,
            nav=nav_html(entries, pages, titles, pages[nb_file]),
            description=f'<p class="description">{md(desc).strip()[3:-4]}</p>' if desc else "",
            body=relink(bodies[nb_file], site_url, pages, ids),
            prev=link(i - 1, "prev", "← "),
            next=link(i + 1, "next", "→ "),
        )
        (out / pages[nb_file]).write_text(page)
    return pages


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
