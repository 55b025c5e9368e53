"""The HTML pages are their Markdown rendered: code, bold, tables and links, raw HTML as text."""

from __future__ import annotations

import re
import shutil
from pathlib import Path


def test_report_html_renders_the_markdown(finished_study: Path) -> None:
    page = (finished_study / "report.html").read_text(encoding="utf-8")
    assert "`" not in page  # backticks became <code>, none is shown literally
    assert "<code>tiny</code>" in page and "<code>val_accuracy</code>" in page
    assert "**" not in page
    assert re.search(r"<td><strong>(reproduced|not reproduced|inconclusive)</strong></td>", page)
    assert "<th>arm</th>" in page and page.count("<table>") == page.count("</table>") >= 2
    images = re.findall(r'<img alt="[^"]+" src="([^"]+)"', page)
    markdown = (finished_study / "REPORT.md").read_text(encoding="utf-8")
    assert len(images) == markdown.count("![") >= 3
    assert "![verdicts:" in markdown and (finished_study / "plots" / "verdicts.png").is_file()
    assert all(src.startswith("data:image/png;base64,") for src in images)


def test_raw_html_in_the_text_is_shown_not_interpreted(tmp_path: Path) -> None:
    from gradkit.studies._html import markdown_page

    text = "# A\n\nbatch < 1024 and <script>alert(1)</script> stay text; see [b](b/REPORT.md)."
    page = markdown_page("A", text, base=tmp_path, embed_images=True)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "batch &lt; 1024" in page
    assert '<a href="b/report.html">b</a>' in page


def test_summary_page_links_each_study_report_html(finished_study: Path, tmp_path: Path) -> None:
    from gradkit.studies import write_index

    root = tmp_path / "studies"
    shutil.copytree(finished_study, root / "tiny")
    write_index(root)
    page = (root / "index.html").read_text(encoding="utf-8")
    assert '<a href="tiny/report.html">' in page
    assert "REPORT.md" not in page and "`" not in page
    images = re.findall(r'<img alt="[^"]*" src="([^"]+)"', page)
    assert images[0] == "plots/verdicts.png"  # the forest plot of every study's claims
    for source in images:
        assert not source.startswith("data:") and (root / source).is_file()
