"""Markdown for the offline site (tools/build_site.py): math kept away from the markdown parser, show_doc entries
rebuilt from nbdev's markdown so that their docstrings and signatures read as the code says.

Math first: every formula (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`, `\\begin{env}...\\end{env}`) outside code is
swapped for an inert placeholder before the markdown parser runs and put back, HTML-escaped, after it. So a line of a
formula that starts with `+ ` or `- ` is not a list item, `\\_` keeps its backslash for MathJax, and `|` inside a
formula does not split a table cell.
"""

import html
import importlib
import inspect
import re

from nbconvert.filters.markdown_mistune import markdown2html_mistune
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

_PH = re.compile(r"MJXMATH(\d+)XHTAMXJM")  # letters and digits only: no markdown rule touches them
_CODE_OR_MATH = re.compile(
    r"(?P<fence>^[ \t]*(?P<f>`{3,}|~{3,})[^\n]*\n.*?^[ \t]*(?P=f)[ \t]*$)"  # fenced code: left as it is
    r"|(?P<code>(?<!`)(?P<bt>`+)(?!`)(?:(?!\n[ \t]*\n).)+?(?<!`)(?P=bt)(?!`))"  # a code span: left as it is
    r"|(?P<math>\\\$"  # an escaped dollar (MathJax's processEscapes shows it as $)
    r"|\$\$(?:(?!\$\$).)+?\$\$"
    r"|\\begin\{(?P<env>[A-Za-z]+\*?)\}.*?\\end\{(?P=env)\}"
    r"|\\\[.+?\\\]|\\\(.+?\\\)"
    r"|\$(?=[^\s$])(?:\\.|[^$\\\n]|\n(?![ \t]*\n))+?(?<=[^\s\\])\$(?!\d))",  # Pandoc's rule for inline $...$
    re.S | re.M,
)
_PANDOC_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)\{([^}]*)\}")  # [text](url){target="_blank" ...}


def protect_math(text: str) -> tuple[str, list[str]]:
    "The text with each formula outside code replaced by a placeholder, and the formulas in order."
    spans = []

    def sub(m):
        if m.group("math") is None:
            return m.group(0)
        spans.append(m.group(0))
        return f"MJXMATH{len(spans) - 1}XHTAMXJM"

    return _CODE_OR_MATH.sub(sub, text), spans


def restore_math(out: str, spans: list[str]) -> str:
    return _PH.sub(lambda m: html.escape(text_mode_escapes(spans[int(m.group(1))]), quote=False), out)


_TEXT_MODE = re.compile(r"\\(?:text|texttt|textrm|textit|textbf|textsf|textnormal|mbox)\s*\{")


def text_mode_escapes(tex: str) -> str:
    """`\\_`, `\\&`, `\\%`, `\\#` inside `\\text{...}` (and its kin) as the characters: LaTeX reads them so, MathJax 2
    shows the backslash (it has no text-mode macros): `\\text{max\\_period}` would read `max\\_period`."""
    out, pos = [], 0
    for m in _TEXT_MODE.finditer(tex):
        if m.start() < pos:
            continue
        depth, i = 1, m.end()
        while i < len(tex) and depth:
            depth += {"{": 1, "}": -1}.get(tex[i], 0) if tex[i - 1] != "\\" or tex[i - 2 : i] == "\\\\" else 0
            i += 1
        out += [tex[pos : m.end()], re.sub(r"\\([_&%#])", r"\1", tex[m.end() : i])]
        pos = i
    return "".join(out) + tex[pos:]


def md(text: str, literal_emphasis: bool = False) -> str:
    """Markdown to HTML, math left for MathJax; Pandoc's link attributes (nbdev's source links) become HTML.
    `literal_emphasis`: `*` and `_` are characters, not emphasis (docstrings: `mult*dim`, `2*dim_out`)."""
    text, spans = protect_math(text)
    if literal_emphasis:
        text = escape_emphasis(text)

    def link(m):
        attrs = re.sub(r"(\w[\w-]*)=", r" \1=", m.group(3)).strip()
        return f'<a href="{html.escape(m.group(2))}" {attrs}>{m.group(1)}</a>'

    return restore_math(markdown2html_mistune(_PANDOC_LINK.sub(link, text)), spans)


_KEEP = re.compile(r"`+[^`]*`+|\]\([^)]*\)|<br\s*/?>|https?://[^\s)]+|MJXMATH\d+XHTAMXJM")


def escape_emphasis(text: str) -> str:
    """Backslash-escape `*`, `_` and `<` outside code spans, link targets, URLs and formulas: in a docstring
    `mult*dim` and `sgm_nb/configs/<name>.yaml` are text (fastcore's `<br>` line breaks in tables stay)."""
    out, pos = [], 0
    for m in _KEEP.finditer(text):
        out += [re.sub(r"([*_<])", r"\\\1", text[pos : m.start()]), m.group(0)]
        pos = m.end()
    return "".join(out + [re.sub(r"([*_<])", r"\\\1", text[pos:])])


# ---------------------------------------------------------------------------------------------------- show_doc

_SHOWDOC = re.compile(
    r"\A---\n\n(?:\[source\]\((?P<src>[^)\s]+)\)\{[^}]*\}\n\n)?(?P<h>#{1,6}) (?P<name>[^\n]+)\n\n"
    r"```python\n(?P<sig>.*?)\n```[ \t]*\n?(?P<rest>.*)\Z",
    re.S,
)
_VAR_ONLY = re.compile(r"\(\s*\*args, \*\*kwargs\s*\)")


def parse_showdoc(text: str) -> dict | None:
    "nbdev's show_doc markdown split into source link, heading level, name, signature, docstring and table."
    m = _SHOWDOC.match(text.strip() + "\n")
    if not m:
        return None
    rest = m.group("rest")
    t = re.search(r"^\|", rest, re.M)
    doc, table = (rest[: t.start()], rest[t.start() :]) if t else (rest, "")
    doc = doc.strip()
    first, _, more = doc.partition("\n")
    if first.startswith("*") and first.endswith("*") and len(first) > 1:  # fastcore's _ital_first
        doc = first[1:-1] + ("\n" + more if more else "")
    return dict(
        src=m.group("src"), level=len(m.group("h")), name=m.group("name").strip(), sig=m.group("sig"), doc=doc,
        table=table.strip(),
    )  # fmt: skip


def lookup(name: str, src: str | None, module: str | None):
    "The library object an entry documents: its module from the source link, else the notebook's default_exp."
    m = re.search(r"/blob/[^/]+/((?:\w+/)*\w+)\.py", src or "")  # …/blob/main/sgm_nb/scalings.py#L20
    modname = m.group(1).replace("/", ".") if m else module
    if not modname:
        return None
    try:
        obj = importlib.import_module(modname)
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj
    except Exception:  # a name that is not in the library (defined in the notebook only): nothing to correct
        return None


def _annotation(a) -> str:
    return inspect.formatannotation(a).replace("__main__.", "")


def format_signature(name: str, sig: inspect.Signature) -> str:
    "A signature in show_doc's layout (`def name(\\n    a:int=1, b\\n):`), from inspect."
    parts = []
    for p in sig.parameters.values():
        s = ("*" if p.kind is p.VAR_POSITIONAL else "**" if p.kind is p.VAR_KEYWORD else "") + p.name
        s += f":{_annotation(p.annotation)}" if p.annotation is not p.empty else ""
        s += f"={getattr(p.default, '__name__', None) or repr(p.default)}" if p.default is not p.empty else ""
        parts.append(s)
    ret = f"->{_annotation(sig.return_annotation)}" if sig.return_annotation is not sig.empty else ""
    return f"def {name}(\n    {', '.join(parts)}\n){ret}:" if parts else f"def {name}(){ret}:"


def fix_signature(sig: str, name: str, obj) -> str:
    """show_doc's signature with two of its faults mended. A class without an `__init__` of its own reads
    `(*args, **kwargs)` (fastcore's docments falls back to `object.__init__`): the signature inspect gives instead.
    A type defined in a notebook reads `__main__.X` (the notebook runs as `__main__`): `X`."""
    if inspect.isclass(obj) and _VAR_ONLY.search(sig):
        try:
            real = inspect.signature(obj)
        except (TypeError, ValueError):  # an exception class: (*args, **kwargs) is what it takes
            real = None
        if real is not None and not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in real.parameters.values()):
            sig = format_signature(name.rsplit(".", 1)[-1], real)
    return sig.replace("__main__.", "")


def own_parameters(obj) -> set[str]:
    try:
        return set(inspect.signature(obj).parameters) - {"self"}
    except (TypeError, ValueError):
        return set()


def unlink_parameters(doc: str, params: set[str]) -> str:
    """nbdev links every backticked name that is also a symbol of the library: a parameter called `train` becomes a
    link to `training.train`. In an entry's own docstring a name of one of its parameters is the parameter."""
    return re.sub(r"\[`(\w+)`\]\([^)\s]+\)", lambda m: f"`{m.group(1)}`" if m.group(1) in params else m.group(0), doc)


def _table_html(table: str) -> str:
    "The docments table; its cells are text too (`*` and `_` literal), except nbdev's bold headers."
    rows = []
    for line in table.splitlines():
        cells = line.split(" | ")
        rows.append(" | ".join(c if re.fullmatch(r"\|? ?\*\*[^*]+\*\* ?\|?|\|?\s*-+\s*\|?", c) else escape_emphasis(c)
                               for c in cells))  # fmt: skip
    return md("\n".join(rows))


def source_url(obj) -> str | None:
    """Where `obj` is defined, in the form of nbdev's source links (`/blob/main/sgm_nb/x.py#L12`, no host), for the
    entries nbdev gives none: its index of symbols skips every notebook whose path contains 'auto'
    (`if 'auto' in cell.nb` in nbdev.doclinks), so 20_autoencoder.ipynb has no source links."""
    try:
        line = inspect.getsourcelines(inspect.unwrap(obj))[1]
        module = inspect.getmodule(obj).__name__
    except (TypeError, OSError, AttributeError):
        return None
    if module.split(".")[0] != "sgm_nb":
        return None
    return f"/blob/main/{module.replace('.', '/')}.py#L{line}"


def render_showdoc(text: str, module: str | None, source_link) -> str | None:
    """An API entry as HTML: source link, heading, signature, docstring (literal `*` and `_`), parameter table.
    `source_link(url)` maps nbdev's source URL to the one the site links to. None when `text` is not show_doc's."""
    e = parse_showdoc(text)
    if e is None:
        return None
    obj = lookup(e["name"], e["src"], module)
    sig = fix_signature(e["sig"], e["name"], obj)
    doc = unlink_parameters(e["doc"], own_parameters(obj)) if obj is not None else e["doc"]
    first, _, more = doc.partition("\n")
    doc_html = md(first, literal_emphasis=True).strip()
    doc_html = re.sub(r"^<p>(.*)</p>$", r'<p class="summary"><em>\1</em></p>', doc_html, flags=re.S)
    if more.strip():
        doc_html += md(more, literal_emphasis=True)
    src = e["src"] or (source_url(obj) if obj is not None else None)
    src = source_link(src) if src else None
    h = e["level"]
    return "".join(
        [
            '<div class="api-entry">',
            f'<a class="source-link" href="{html.escape(src)}">source</a>' if src else "",
            f'<h{h} class="api-name">{html.escape(e["name"])}</h{h}>',
            f'<div class="signature">{highlight(sig, PythonLexer(), HtmlFormatter(cssclass="highlight"))}</div>',
            f'<div class="docstring">{doc_html}</div>' if doc.strip() else "",
            _table_html(e["table"]) if e["table"] else "",
            "</div>",
        ]
    )
