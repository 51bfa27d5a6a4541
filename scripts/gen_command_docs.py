"""Write the reference section of each docs/commands/<command>.md from `personae <command>
--help`, keeping the hand-written text above the marker. `--check` fails when a page is
missing or out of date (the test suite runs it)."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "commands"
MARK = "<!-- reference: generated from --help by scripts/gen_command_docs.py -->"


def command_names() -> list[str]:
    from personae.cli import (
        app,
        commands,  # noqa: F401
    )

    return sorted(c.name or c.callback.__name__ for c in app.registered_commands)  # type: ignore[union-attr]


def help_text(name: str) -> str:
    from personae.cli import app

    result = CliRunner().invoke(
        app, [name, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    )
    assert result.exit_code == 0, result.output
    return "\n".join(line.rstrip() for line in result.output.strip().splitlines())


def render(name: str, existing: str) -> str:
    intro = existing.split(MARK)[0].rstrip() if existing.strip() else f"# personae {name}"
    return f"{intro}\n\n{MARK}\n\n```text\n{help_text(name)}\n```\n"


def main(check: bool) -> int:
    stale = []
    for name in command_names():
        page = DOCS / f"{name}.md"
        old = page.read_text() if page.exists() else ""
        new = render(name, old)
        if old != new:
            stale.append(str(page.relative_to(ROOT)))
            if not check:
                page.write_text(new)
    if check and stale:
        print("out of date (run python scripts/gen_command_docs.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
