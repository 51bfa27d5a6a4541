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
    """Commands and command groups (a group's page holds each of its commands)."""
    from personae.cli import app, register

    register()
    names = [c.name or c.callback.__name__ for c in app.registered_commands]  # type: ignore[union-attr]
    return sorted([*names, *(g.name for g in app.registered_groups if g.name)])


def subcommands(name: str) -> list[str]:
    from personae.cli import app

    for group in app.registered_groups:
        if group.name == name and group.typer_instance is not None:
            return [c.name or c.callback.__name__ for c in group.typer_instance.registered_commands]  # type: ignore[union-attr]
    return []


def help_text(*args: str) -> str:
    from personae.cli import app

    result = CliRunner().invoke(
        app, [*args, "--help"], env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    )
    assert result.exit_code == 0, result.output
    return "\n".join(line.rstrip() for line in result.output.strip().splitlines())


def render(name: str, existing: str) -> str:
    intro = existing.split(MARK)[0].rstrip() if existing.strip() else f"# personae {name}"
    parts = [f"{intro}\n\n{MARK}\n\n```text\n{help_text(name)}\n```\n"]
    for sub in subcommands(name):
        parts.append(f"\n### personae {name} {sub}\n\n```text\n{help_text(name, sub)}\n```\n")
    return "".join(parts)


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
