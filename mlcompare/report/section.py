"""A report section beside the results table (tuning, quality), rendered alike into Markdown and HTML."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from mlcompare.report.text import inline_html

Figure = tuple[str, str, Path]  # (title, caption, PNG path)


def md_text(text: object) -> str:
    r"""``text`` safe in report.md: Markdown renders raw HTML, and a method name or message is untrusted
    (``<img onerror=...>``), so ``& < >`` are escaped as report.html escapes them; ``|`` would end a
    table cell and a newline a table row.

    >>> md_text("<img src=x onerror=alert(1)> | a\nb")
    '&lt;img src=x onerror=alert(1)&gt; \\| a b'
    """
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


@dataclass
class Section:
    """A report section beside the results table (tuning, quality): paragraphs, an optional table
    (a header and rows of cell texts) and its own figures, rendered alike into Markdown and HTML."""

    title: str
    paragraphs: list[str]
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)

    def markdown(self, out: Path) -> list[str]:
        lines = [f"## {md_text(self.title)}", ""]
        for text in self.paragraphs:
            lines += [md_text(text), ""]
        if self.header:
            lines += ["| " + " | ".join(map(md_text, self.header)) + " |", "|" + "---|" * len(self.header)]
            lines += ["| " + " | ".join(map(md_text, row)) + " |" for row in self.rows] + [""]
        for title, caption, path in self.figures:
            lines += [f"### {title}", "", caption, "", f"![{title}]({path.relative_to(out).as_posix()})", ""]
        return lines

    def html(self) -> str:
        parts = [f"<h2>{html.escape(self.title)}</h2>"] + [f"<p>{inline_html(t)}</p>" for t in self.paragraphs]
        if self.header:  # in a box of its own that scrolls sideways, so a wide table never widens the page
            parts.append("<div class='wide'><table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
                         + "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{inline_html(c)}</td>" for c in row)
                                                              + "</tr>" for row in self.rows) + "</tbody></table></div>")
        parts += [html_figure(*figure) for figure in self.figures]
        return "".join(parts)


def html_figure(title: str, caption: str, path: Path) -> str:
    return (f"<h3>{html.escape(title)}</h3><p>{html.escape(caption)}</p><img alt='{html.escape(title)}' "
            f"src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>")
