"""Writing one benchmark's section of docs/benchmarks.md, between its markers."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(name: str, title: str, lines: list[str]) -> str:
    """Replace the section between `<!-- name:begin -->` and `<!-- name:end -->` (or append
    it under `title`), and return it."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = "\n".join([begin, *lines, end])
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
    else:
        text += f"\n## {title}\n\n{section}\n"
    DOC.write_text(text)
    return section
