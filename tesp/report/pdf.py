"""``report.pdf`` from ``report.md`` and its figures: the same content, laid out for reading.

Headings and paragraphs are wrapped text (Markdown's marks removed); tables are aligned
monospace text with every cell whole (columns that do not fit the page width go to a second
block); every figure gets a page of its own with its caption (its section's heading and text in
``report.md``) above it.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
from matplotlib.backends.backend_pdf import PdfPages

A4 = (8.27, 11.69)
A4_LANDSCAPE = (11.69, 8.27)
LINES_PER_PAGE = 75
MONO_WIDTH = 150  # characters of a table line at 5.5 pt on an A4 page
IMAGE = re.compile(r"^!\[[^\]]*\]\(([^)]+)\)$")


def plain(text: str) -> str:
    """A Markdown line without its marks: backticks, bold, heading hashes, links' targets."""
    text = re.sub(r"^#+\s*", "", text)
    text = text.replace("**", "").replace("`", "")
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)


def blocks(md: Sequence[str]) -> Iterator[tuple[str, object]]:
    """``report.md``'s lines as ("heading", text), ("text", paragraph), ("table", rows of cells)
    and ("figure", (png name,)) blocks, in order."""
    lines = "\n".join(md).split("\n")  # an entry may hold several lines (a table)
    i, paragraph = 0, []
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [plain(c.strip()) for c in lines[i].strip().strip("|").split("|")]
                if not all(set(c) <= set("-: ") for c in cells):  # not the |---| separator
                    rows.append(cells)
                i += 1
            if paragraph:
                yield "text", " ".join(paragraph)
                paragraph = []
            yield "table", rows
            continue
        image = IMAGE.match(line.strip())
        if image:
            if paragraph:
                yield "text", " ".join(paragraph)
                paragraph = []
            yield "figure", (image.group(1),)
        elif line.startswith("#"):
            if paragraph:
                yield "text", " ".join(paragraph)
                paragraph = []
            yield "heading", plain(line)
        elif not line.strip():
            if paragraph:
                yield "text", " ".join(paragraph)
                paragraph = []
        else:
            paragraph.append(plain(line.lstrip("- ") if line.startswith("- ") else line))
            if line.startswith("- "):  # a list item stays a line of its own
                yield "text", "- " + paragraph.pop()
        i += 1
    if paragraph:
        yield "text", " ".join(paragraph)


def write(path: Path, title: str, md: Sequence[str], figures_dir: Path) -> None:
    """The PDF of ``md`` (report.md's lines), its figures read from ``figures_dir``."""
    with PdfPages(path) as pdf:
        text: list[tuple[str, str]] = [("title", title)]  # (style, line) not yet on a page
        section = 0  # where the current section (its heading and text: a figure's caption) starts

        def flush(upto: int | None = None) -> None:
            lines = text[:upto]
            for start in range(0, len(lines), LINES_PER_PAGE):
                _text_page(pdf, lines[start : start + LINES_PER_PAGE])
            del text[:upto]

        for kind, value in blocks(md[1:]):  # md[0] is the title
            if kind == "heading":
                section = len(text)
                text += [("body", ""), ("heading", value)]
            elif kind == "text":
                text += [("body", line) for line in textwrap.wrap(value, 110) or [""]]
            elif kind == "table":
                text += [("mono", line) for line in table_lines(value)]
            else:
                if sum(1 for _, line in text[:section] if line) <= 3:
                    section = 0  # a few heading lines only: they join the caption, not a page
                caption = [line for _, line in text[section:] if line]
                flush(section)
                _figure_page(pdf, figures_dir / value[0], caption)
                text.clear()
                section = 0
        flush()


def table_lines(rows: list[list[str]], width: int = MONO_WIDTH) -> list[str]:
    """A table as aligned monospace lines, every cell whole: when the columns do not fit in
    ``width`` characters they are split into groups, each repeating the first two (the row's
    names, e.g. env and method)."""
    columns = max(len(r) for r in rows)
    rows = [r + [""] * (columns - len(r)) for r in rows]
    widths = [max(len(r[c]) for r in rows) for c in range(columns)]
    keys = list(range(min(2, columns - 1)))
    groups: list[list[int]] = [[]]
    used = sum(widths[k] + 2 for k in keys)
    for c in range(len(keys), columns):
        if groups[-1] and used + widths[c] + 2 > width:
            groups.append([])
            used = sum(widths[k] + 2 for k in keys)
        groups[-1].append(c)
        used += widths[c] + 2
    out: list[str] = []
    for group in groups:
        cols = keys + group
        for i, row in enumerate(rows):
            out.append("  ".join(row[c].ljust(widths[c]) for c in cols).rstrip())
            if i == 0:
                out.append("  ".join("-" * widths[c] for c in cols))
        out.append("")
    return out


def _text_page(pdf: PdfPages, lines: list[tuple[str, str]]) -> None:
    fig = plt.figure(figsize=A4)
    y = 0.97
    for style, line in lines:
        size = {"title": 14, "heading": 10, "mono": 5.5}.get(style, 7)
        fig.text(
            0.04,
            y,
            line,
            fontsize=size,
            va="top",
            weight="bold" if style in ("title", "heading") else "normal",
            family="monospace" if style == "mono" else "sans-serif",
        )
        y -= 0.0128 * max(size, 5.5) / 7
    pdf.savefig(fig)
    plt.close(fig)


def _figure_page(pdf: PdfPages, png: Path, caption: list[str]) -> None:
    """The figure on a page of its own, landscape when it is wide, its caption above it."""
    image = mpimg.imread(png) if png.is_file() else None
    wide = image is not None and image.shape[1] > 1.2 * image.shape[0]
    fig = plt.figure(figsize=A4_LANDSCAPE if wide else A4)
    fig.text(0.04, 0.97, "\n".join(caption), fontsize=8, va="top")
    top = 0.95 - 0.017 * len(caption) * (A4[1] / fig.get_figheight())
    ax = fig.add_axes((0.03, 0.03, 0.94, max(0.3, top - 0.03)))
    ax.axis("off")
    if image is not None:
        ax.imshow(image)
    pdf.savefig(fig)
    plt.close(fig)
