"""The docs builder's markdown, without a browser or a build: formulas kept from the markdown parser, show_doc entries
rebuilt (docstrings with literal `*` and `_`, nbdev's wrong signatures mended), outputs in nbconvert's order."""

import sys

import pytest
from helpers import ROOT

pytest.importorskip("nbconvert", reason="nbconvert comes with the dev dependencies: run `make venv`")
sys.path.insert(0, str(ROOT / "tools"))
import build_site  # noqa: E402
import site_markdown as sm  # noqa: E402

SAMPLERS_REFERENCE = r"""SDE-DPM-Solver++(2M) is an equation ($\eta = 1$, midpoint):
$\tilde x_{t_i} = \frac{\sigma_{t_i}}{\sigma_{t_{i-1}}}e^{-h_i}\tilde x_{t_{i-1}} + \alpha_{t_i}(1 - e^{-2h_i})D_{i-1}
 + \frac{\alpha_{t_i}}{2r_i}(1 - e^{-2h_i})(D_{i-1} - D_{i-2}) + \sigma_{t_i}\sqrt{1 - e^{-2h_i}}\,z$,
transcribed below."""

ORACLE_ONLINE_SOFTMAX = r"""keep the largest logit so far and rescale both by $e^{m_\text{old}
- m_\text{new}}$ when $m$ grows. Memory is $O(\text{chunk}^2)$."""


@pytest.mark.parametrize("text", [SAMPLERS_REFERENCE, ORACLE_ONLINE_SOFTMAX])
def test_a_formula_line_starting_with_plus_or_minus_is_not_a_list(text):
    out = sm.md(text)
    assert "<li>" not in out and "<ul>" not in out, out
    for formula in sm.protect_math(text)[1]:
        assert sm.html.escape(formula, quote=False) in out, formula


def test_math_keeps_its_backslashes_and_bars_and_code_keeps_its_dollars():
    out = sm.md(r"A $\text{max\_period}$, $a\_b$ and $|x|$:" + "\n\n| a | b |\n|---|---|\n| $|x|$ | `$HOME` |\n")
    # MathJax 2 shows `\_` inside \text{} as a backslash and an underscore: the builder writes the underscore
    assert r"$\text{max_period}$" in out and r"$a\_b$" in out
    assert out.count("$|x|$") == 2 and "<code>$HOME</code>" in out
    assert out.count("<td>") == 2, out
    assert sm.protect_math("costs $5 and $6")[1] == [], "a dollar followed by a digit closes no formula"
    assert sm.protect_math(r"\$x\$ and $y$")[1] == [r"\$", r"\$", "$y$"]


def test_docstrings_keep_stars_and_underscores():
    out = sm.md("to mult*dim, then 2*dim_out; value * gelu(gate), `a*b`, $a*b$", literal_emphasis=True)
    assert "mult*dim" in out and "2*dim_out" in out and "<em>" not in out
    assert "<code>a*b</code>" in out and "$a*b$" in out
    assert "configs/&lt;name&gt;.yaml" in sm.md("the packaged configs/<name>.yaml", literal_emphasis=True)
    link = sm.md("see [`VScaling`](https://sgm-nb.github.io/sgm_nb/scalings.html#vscaling)", literal_emphasis=True)
    assert 'href="https://sgm-nb.github.io/sgm_nb/scalings.html#vscaling"' in link


GEGLU = """---

[source](https://github.com/sgm-nb/sgm_nb/blob/main/sgm_nb/unet.py#L262){target="_blank" style="float:right"}

### GEGLU

```python
def GEGLU(
    dim_in:int, dim_out:int
):
```

*Gated GELU: one projection to 2*dim_out, split into value and gate, value * gelu(gate).*"""


def test_a_showdoc_entry_is_rebuilt():
    out = sm.render_showdoc(GEGLU, "sgm_nb.unet", build_site.local_source_link)
    assert '<a class="source-link" href="unet.py.html#L-262">' in out
    assert '<h3 class="api-name">GEGLU</h3>' in out
    assert "2*dim_out" in out and "value * gelu(gate)" in out and '<p class="summary"><em>' in out
    assert sm.render_showdoc("### not show_doc", None, str) is None


def test_signatures_nbdev_gets_wrong_are_mended():
    from sgm_nb import metrics, scalings

    assert sm.fix_signature("def EpsScaling(\n    *args, **kwargs\n):", "EpsScaling", scalings.EpsScaling) == (
        "def EpsScaling():"
    )
    assert sm.fix_signature("def f(\n    x\n)->__main__.LeNet:", "f", None) == "def f(\n    x\n)->LeNet:"
    exc = "def E(\n    *args, **kwargs\n):"
    assert sm.fix_signature(exc, "E", ValueError) == exc, "an exception class does take (*args, **kwargs)"
    doc = "memorised with [`train`](https://sgm-nb.github.io/sgm_nb/training.html#train), by `labels`"
    assert sm.unlink_parameters(doc, sm.own_parameters(metrics.image_metrics)).startswith("memorised with `train`,")
    other = "what [`train`](https://sgm-nb.github.io/sgm_nb/training.html#train) did"
    assert sm.unlink_parameters(other, {"x"}) == other


def test_html_output_wins_over_its_markdown_form():
    out = {
        "output_type": "display_data",
        "data": {
            "text/html": "<div><progress max='10' value='10'></progress></div>",
            "text/markdown": "```html\n<div>",
        },
    }
    html = build_site.render_output(out, dict(nb="x.ipynb", module=None, source_link=str))
    assert "<progress" in html and "&lt;progress" not in html


def test_source_links_and_contents():
    url = "https://github.com/sgm-nb/sgm_nb/blob/main/sgm_nb/scalings.py#L20"
    assert build_site.local_source_link(url) == "scalings.py.html#L-20"
    body = build_site.add_heading_ids('<h2>The $\\sigma$ grid</h2><h3 class="api-name">EDMScaling</h3><h4>x</h4>')
    toc = build_site.toc_html(body)
    assert 'href="#the-sigma-grid"' in toc and 'href="#edmscaling" class="api"' in toc and "#x" not in toc
    assert build_site.toc_html("").count("no sections") == 1


def test_an_api_entry_keeps_the_plain_id():
    body = build_site.add_heading_ids(
        '<h2><code>ResBlock</code></h2><h3 class="api-name">ResBlock</h3><h2>ResBlock</h2>'
    )
    assert body.count('id="resblock"') == 1 and '<h3 id="resblock" class="api-name">' in body
    assert 'id="resblock-1"' in body and 'id="resblock-2"' in body
