"""Markdown to an HTML page, through the ``markdown`` package (Python-Markdown).

A report's HTML is its Markdown rendered, not a second hand-written rendering: what the Markdown
says in backticks, bold or a table reads the same in the browser. Raw HTML in the text (a claim
that says ``batch < 1024``) is shown as text, never interpreted. Images are either embedded as
``data:`` URIs (a study's report: one file that can be mailed) or left relative (the summary
page, which points into the study folders beside it); links to ``REPORT.md`` files point to
their ``report.html``.
"""

from __future__ import annotations

import base64
import html
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor

__all__ = ["markdown_page"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
    "line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 3px;"
    "border-radius:3px}"
)


class _Rewrite(Treeprocessor):
    """Embed (or keep relative) each image; point links at ``REPORT.md`` to ``report.html``."""

    def __init__(self, md: markdown.Markdown, base: Path, embed: bool) -> None:
        super().__init__(md)
        self.base = base
        self.embed = embed

    def run(self, root: ElementTree.Element) -> None:
        for image in root.iter("img"):
            source = image.get("src", "")
            if self.embed and "://" not in source and not source.startswith("data:"):
                data = base64.b64encode((self.base / source).read_bytes()).decode("ascii")
                image.set("src", f"data:image/png;base64,{data}")
        for link in root.iter("a"):
            target = link.get("href", "")
            if "://" not in target and (target == "REPORT.md" or target.endswith("/REPORT.md")):
                link.set("href", target[: -len("REPORT.md")] + "report.html")


class _Figures(Extension):
    def __init__(self, base: Path, embed: bool) -> None:
        super().__init__()
        self.base = base
        self.embed = embed

    def extendMarkdown(self, md: markdown.Markdown) -> None:  # noqa: N802 (the library's name)
        # Raw HTML is text: the documented way is to drop the two HTML processors.
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")
        md.treeprocessors.register(_Rewrite(md, self.base, self.embed), "gradkit_figures", 0)


def markdown_page(title: str, text: str, *, base: Path, embed_images: bool) -> str:
    """A complete HTML page of the Markdown ``text``; image paths are relative to ``base``."""
    body = markdown.markdown(text, extensions=["tables", _Figures(base, embed_images)])
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            # No favicon request: the page is a file, and a missing icon is a console error.
            '<link rel="icon" href="data:,">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style></head><body>",
            body,
            "</body></html>",
            "",
        ]
    )
