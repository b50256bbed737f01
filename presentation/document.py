"""The one renderer: a small document model written out as markdown and as self-contained HTML.

A :class:`Document` is a list of blocks (headings, paragraphs, bullet lists, tables, code, images)
plus the images themselves as PNG bytes. Both outputs come from the same blocks, so the markdown
and the HTML always agree; the same blocks give the same bytes. Figures are matplotlib
``Figure`` objects (no pyplot: no global state), saved as PNG without date or software metadata
so that an unchanged input draws byte-identical images.

:func:`save` writes a document beside the data it describes (images first, so a reader never sees
a page that links an image not there yet); :func:`document_markdown` reads a stored markdown
document back with its image links made absolute (what Prefect artifacts show).

Inline markup, in paragraphs, list items and headings: ```code``` and ``**bold**``.
"""
from __future__ import annotations

import html
import io
import json
import math
import re
from dataclasses import dataclass, field
from typing import Callable

from corpus.store import Store


# --------------------------------------------------------------------------- cells


def num(x: float) -> str:
    """A float as a table shows it: integers without a point, else 6 significant digits."""
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x)) if abs(x) >= 1 or x == 0 else f"{x:g}"
    return f"{x:.6g}"


def cell(value) -> str:
    """Any value as table text: None as a dash, booleans as yes/no, dicts and lists as sorted JSON."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return num(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


# --------------------------------------------------------------------------- the model


@dataclass
class Table:
    id: str
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]


@dataclass
class Document:
    """Blocks rendered the same way to markdown and to HTML; images ride along as PNG bytes.

    ``images_dir``: the folder (relative to the document) that images are linked from and saved
    to; empty for images beside the document. ``format_cell`` turns a table value into text.
    """

    images_dir: str = ""
    format_cell: Callable[[object], str] = cell
    blocks: list[tuple] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)

    def h(self, level: int, text: str, anchor: str | None = None) -> None:
        self.blocks.append(("h", level, text, anchor))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def code(self, text: str, language: str = "") -> None:
        self.blocks.append(("code", text, language))

    def table(self, id: str, headers: list[str], rows: list[list], numeric: list[bool] | None = None) -> None:
        cells = [[self.format_cell(v) for v in row] for row in rows]
        self.blocks.append(("table", Table(id, list(headers), cells, numeric or [False] * len(headers))))

    def img(self, name: str, png: bytes, alt: str) -> None:
        self.images[name] = png
        self.blocks.append(("img", self.image_key(name), alt))

    def image_key(self, name: str) -> str:
        """Where image ``name`` lives, relative to the document."""
        return f"{self.images_dir}/{name}" if self.images_dir else name


# --------------------------------------------------------------------------- markdown


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document) -> str:
    out: list[str] = []
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"{'#' * block[1]} {block[2]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "code":
            out.append(f"```{block[2]}\n{block[1].rstrip()}\n```")
        elif kind == "table":
            t: Table = block[1]
            lines = ["| " + " | ".join(_md_cell(h) for h in t.headers) + " |",
                     "|" + "|".join("---:" if n else "---" for n in t.numeric) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(out) + "\n"


# --------------------------------------------------------------------------- HTML

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline_html(text: str) -> str:
    out = html.escape(text, quote=False)
    out = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", out)
    return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", out)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 70em;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f4f4f4; padding: 0 0.2em; font-size: 0.92em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; margin: 0.5em 0 1em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
nav ul { columns: 2; }
"""


def to_html(doc: Document, title: str) -> str:
    """A self-contained page (inline CSS, no JavaScript); level-2 headings with an anchor get a contents list."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>"]
    toc = [(b[3], b[2]) for b in doc.blocks if b[0] == "h" and b[1] == 2 and b[3]]
    for block in doc.blocks:
        kind = block[0]
        if kind == "h":
            anchor = f' id="{html.escape(block[3])}"' if block[3] else ""
            parts.append(f"<h{block[1]}{anchor}>{_inline_html(block[2])}</h{block[1]}>")
            if block[1] == 1 and toc:
                links = "".join(f'<li><a href="#{html.escape(a)}">{_inline_html(t)}</a></li>' for a, t in toc)
                parts.append(f"<nav><ul>{links}</ul></nav>")
        elif kind == "p":
            parts.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "code":
            parts.append(f"<pre><code>{html.escape(block[1].rstrip(), quote=False)}</code></pre>")
        elif kind == "table":
            t: Table = block[1]
            head = "".join(f"<th>{html.escape(h)}</th>" for h in t.headers)
            body = "".join("<tr>" + "".join(f'<td class="num">{html.escape(c)}</td>' if n
                                            else f"<td>{html.escape(c)}</td>" for c, n in zip(row, t.numeric))
                           + "</tr>" for row in t.rows)
            parts.append(f'<table id="table-{html.escape(t.id)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
        elif kind == "img":
            parts.append(f'<p><img src="{html.escape(block[1])}" alt="{html.escape(block[2])}"></p>')
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- figures


def figure(width: float, height: float, *, layout: str | None = "constrained"):
    """A matplotlib figure of ``width`` × ``height`` inches at 100 dpi, drawn off-screen (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout=layout)


def colours() -> list[str]:
    """matplotlib's default colour cycle, for series that must keep one colour across panels."""
    import matplotlib

    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def png(fig, *, dpi: int = 100, tight: bool = False) -> bytes:
    """The figure as PNG bytes; ``tight`` crops to what is drawn (legends outside the axes)."""
    buf = io.BytesIO()
    # no software/date metadata: the same input always gives the same bytes
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None},
                **({"bbox_inches": "tight"} if tight else {}))
    return buf.getvalue()


# --------------------------------------------------------------------------- on the store


def save(store: Store, doc: Document, *, markdown_key: str, html_key: str | None = None,
         title: str = "") -> dict[str, str]:
    """Write the images, then the markdown (and the HTML page), each atomically; their URLs by key."""
    urls = {}
    for name, data in sorted(doc.images.items()):
        key = doc.image_key(name)
        urls[key] = store.put_bytes(key, data).url
    urls[markdown_key] = store.put_bytes(markdown_key, to_markdown(doc).encode("utf-8")).url
    if html_key:
        urls[html_key] = store.put_bytes(html_key, to_html(doc, title).encode("utf-8")).url
    return urls


_RELATIVE_IMAGE = re.compile(r"(!\[[^\]]*\]\()(?![a-z][a-z0-9+.-]*://|/)([^)\s]+)\)")


def document_markdown(store: Store, key: str) -> str:
    """The markdown document at ``key`` with its relative image links made absolute (``store.url``)."""
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    text = store.get_bytes(key).decode("utf-8")
    return _RELATIVE_IMAGE.sub(lambda m: f"{m.group(1)}{store.url(folder + m.group(2))})", text)


__all__ = ["Document", "Table", "cell", "num", "to_markdown", "to_html", "figure", "colours", "png", "save",
           "document_markdown"]
