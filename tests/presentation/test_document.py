"""The one renderer: the same blocks as markdown and as HTML, figures as reproducible PNG, saved in order."""
from __future__ import annotations

import numpy as np

from corpus.store import open_store
from presentation.document import Document, cell, figure, png, save, to_html, to_markdown


def _doc(images_dir: str = "plots") -> Document:
    doc = Document(images_dir=images_dir)
    doc.h(1, "Report `r1`")
    doc.p("Some **bold** and `code` & <angle> text.")
    doc.h(2, "Numbers", "numbers")
    doc.table("t", ["name", "value"], [["a|b", 1.5], ["none", None], ["flag", True], ["map", {"b": 1, "a": 2}],
                                       ["int-like", 3.0], ["small", 0.000125]], [False, True])
    doc.ul(["`x`: one", "two"])
    doc.ul([])  # an empty list draws nothing
    doc.code("key: value\nother: 2\n", "yaml")
    doc.img("line.png", _line_png(), "a line")
    return doc


def _line_png() -> bytes:
    fig = figure(4, 3)
    ax = fig.subplots()
    ax.plot(np.arange(10), np.arange(10) ** 2)
    return png(fig)


def test_markdown_of_every_block_kind():
    md = to_markdown(_doc())
    assert md == (
        "# Report `r1`\n\n"
        "Some **bold** and `code` & <angle> text.\n\n"
        "## Numbers\n\n"
        "| name | value |\n|---|---:|\n| a\\|b | 1.5 |\n| none | — |\n| flag | yes |\n"
        '| map | {"a": 2, "b": 1} |\n| int-like | 3 |\n| small | 0.000125 |\n\n'
        "- `x`: one\n- two\n\n"
        "```yaml\nkey: value\nother: 2\n```\n\n"
        "![a line](plots/line.png)\n")


def test_html_has_the_same_content_escaped_with_contents_and_numeric_cells():
    page = to_html(_doc(), "Report r1")
    assert page.startswith("<!DOCTYPE html>") and "<title>Report r1</title>" in page and "<script" not in page
    assert "<h1>Report <code>r1</code></h1>" in page
    assert '<nav><ul><li><a href="#numbers">Numbers</a></li></ul></nav>' in page
    assert "<p>Some <strong>bold</strong> and <code>code</code> &amp; &lt;angle&gt; text.</p>" in page
    assert '<table id="table-t">' in page and "<td>a|b</td>" in page and '<td class="num">1.5</td>' in page
    assert "<li><code>x</code>: one</li><li>two</li>" in page
    assert "<pre><code>key: value\nother: 2</code></pre>" in page
    assert '<img src="plots/line.png" alt="a line">' in page


def test_cells_and_a_custom_cell_format():
    assert [cell(v) for v in (None, False, 2.0, 1 / 3, float("nan"), [1], "s")] == \
        ["—", "no", "2", "0.333333", "nan", "[1]", "s"]
    doc = Document(format_cell=lambda v: f"<{v}>")
    doc.table("x", ["a"], [[1]])
    assert "| <1> |" in to_markdown(doc)


def test_figures_are_reproducible_png():
    first, second = _line_png(), _line_png()
    assert first.startswith(b"\x89PNG\r\n\x1a\n") and first == second, "no date or software in the PNG"


def test_save_writes_images_first_then_the_documents(tmp_path):
    store = open_store(tmp_path).at("releases/r1")
    urls = save(store, _doc(), markdown_key="doc.md", html_key="doc.html", title="Report r1")
    assert list(urls) == ["plots/line.png", "doc.md", "doc.html"]
    assert urls["doc.md"] == store.url("doc.md")
    assert store.get_bytes("doc.md").decode() == to_markdown(_doc())
    assert store.get_bytes("doc.html").decode() == to_html(_doc(), "Report r1")
    assert store.get_bytes("plots/line.png") == _line_png()
    beside = save(store, _doc(images_dir=""), markdown_key="other.md")
    assert list(beside) == ["line.png", "other.md"] and "![a line](line.png)" in store.get_bytes("other.md").decode()
