"""Static HTML pages of images (built with dominate), for training previews and test results."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import dominate
from dominate import tags

from util.atomic import write_text_atomic

_STYLE = """
body { font-family: sans-serif; margin: 1em 2em; }
.row { display: flex; flex-wrap: wrap; gap: 8px; margin-bottom: 1em; }
figure { margin: 0; text-align: center; font-size: 0.85em; max-width: 100%; }
figcaption { margin-top: 2px; }
img { image-rendering: pixelated; border: 1px solid #ccc; max-width: 100%; height: auto; }
.colourbar { height: 10px; border: 1px solid #ccc; margin-top: 4px; }
.colourbar-ticks { display: flex; justify-content: space-between; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
"""


@dataclass(frozen=True)
class ColourBar:
    """The key of a one-channel image: what black (``low``), mid-gray and white (``high``) stand for."""

    low: str
    high: str
    middle: str = ""
    title: str = ""


@dataclass(frozen=True)
class PageImage:
    """An image of a row: its path relative to the page, a bold ``title`` line, a caption, an optional key."""

    path: str
    caption: str
    title: str = ""
    colour_bar: ColourBar | None = None


class HTMLPage:
    """A page of headers, paragraphs and rows of captioned images linked to their files."""

    def __init__(self, title: str, refresh_seconds: int = 0) -> None:
        self.document = dominate.document(title=title)
        with self.document.head:
            tags.style(_STYLE)
            if refresh_seconds > 0:
                tags.meta(http_equiv="refresh", content=str(refresh_seconds))
        with self.document:
            tags.h1(title)

    def add_header(self, text: str, level: int = 3) -> None:
        with self.document:
            getattr(tags, f"h{level}")(text)

    def add_paragraph(self, text: str) -> None:
        with self.document:
            tags.p(text)

    def add_list(self, items: list[str], title: str = "") -> None:
        """A bulleted list, with an optional lead-in line."""
        with self.document:
            if title:
                tags.p(title)
            with tags.ul():
                for item in items:
                    tags.li(item)

    def add_link(self, text: str, href: str) -> None:
        with self.document:
            tags.p(tags.a(text, href=href))

    def add_table(self, header: list[str], rows: list[list[str]]) -> None:
        """A plain table: one header row, then the rows of text."""
        with self.document, tags.table():
            with tags.tr():
                for cell in header:
                    tags.th(cell)
            for row in rows:
                with tags.tr():
                    for cell in row:
                        tags.td(cell)

    def add_images(self, images: Sequence[tuple[str, str] | PageImage], width: int) -> None:
        """One row of images (wrapping on narrow screens), each linked to its file: (path relative to the
        page, caption) pairs, or :class:`PageImage` items with a title and a colour bar."""
        with self.document, tags.div(cls="row"):
            for item in images:
                image = item if isinstance(item, PageImage) else PageImage(*item)
                with tags.figure(style=f"width:{width}px"):
                    with tags.a(href=image.path):
                        tags.img(src=image.path, style=f"width:{width}px", alt=image.title or image.caption)
                    if image.colour_bar is not None:
                        _colour_bar(image.colour_bar)
                    with tags.figcaption():
                        if image.title:
                            tags.b(image.title)
                            tags.br()
                        tags.span(image.caption)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page atomically and return its path."""
        write_text_atomic(path, self.document.render())
        return Path(path)


def _colour_bar(key: ColourBar) -> None:
    """A black-to-white strip with its meaning at both ends (and the middle), under the image."""
    tags.div(cls="colourbar", style="background: linear-gradient(to right, #000, #fff)")
    with tags.div(cls="colourbar-ticks"):
        tags.span(key.low)
        tags.span(key.middle)
        tags.span(key.high)
    if key.title:
        tags.div(key.title, cls="colourbar-title")
