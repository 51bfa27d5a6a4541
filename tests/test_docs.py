"""Docs cannot rot: every command and every setting has its documentation, generated from the
same declarations the code uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from personae.cli import app, register
from personae.config import SECTIONS

ROOT = Path(__file__).resolve().parents[1]
register()


def assert_generated_page_is_current(script: str) -> None:
    """The docs generator `scripts/<script>` finds its page up to date."""
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), "--check"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_command_has_a_current_page() -> None:
    names = {c.name or c.callback.__name__ for c in app.registered_commands}  # type: ignore[union-attr]
    names |= {g.name for g in app.registered_groups if g.name}
    pages = {p.stem for p in (ROOT / "docs" / "commands").glob("*.md")}
    assert names <= pages, f"commands without a docs page: {sorted(names - pages)}"
    assert_generated_page_is_current("gen_command_docs.py")


def test_the_architecture_page_shows_the_current_stage_graph() -> None:
    assert_generated_page_is_current("gen_stage_graph.py")


def test_the_segments_page_lists_every_ready_made_segmentation() -> None:
    assert_generated_page_is_current("gen_segments_docs.py")


def test_every_setting_is_documented() -> None:
    assert_generated_page_is_current("gen_config_docs.py")
    page = (ROOT / "docs" / "configuration.md").read_text()
    for _title, model in SECTIONS:
        for name, field in model.model_fields.items():
            assert f"| `{name}` |" in page
            assert field.description, f"{model.__name__}.{name} has no description"


def test_every_command_has_help_for_every_option() -> None:
    groups = [g.typer_instance for g in app.registered_groups if g.typer_instance]
    commands = [*app.registered_commands, *(c for g in groups for c in g.registered_commands)]
    for cmd in commands:
        assert cmd.callback is not None and cmd.callback.__doc__, cmd.name
