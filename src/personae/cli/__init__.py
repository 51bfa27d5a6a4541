"""The `personae` command line: a thin layer over `personae.api`.

Every command takes `--json` for machine-readable output and `--project` for the folder of
personae.toml. Errors from personae print one clear message and exit with status 1.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from personae.api import Project
from personae.errors import PersonaeError

app = typer.Typer(
    name="personae",
    help="Customer data in; traits, segments and data-grounded personas out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Folder holding personae.toml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]
EngineOpt = Annotated[
    str | None,
    typer.Option(help="duckdb or spark; overrides [store] engine for this run."),
]


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    return obj


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(_jsonable(obj), indent=2) + "\n")


def fail(err: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def progress_bar(quiet: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
        transient=True,
    )


def step_callback(bar: Progress, label: str) -> Callable[[str, int, int], None]:
    task = bar.add_task(label, total=None)

    def update(name: str, done: int, total: int) -> None:
        bar.update(task, description=f"{label} {name}", completed=done, total=total)

    return update


@app.callback()
def main_callback(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    """personae turns customer files into traits, segments and personas."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    from personae.cli import commands  # noqa: F401  (registers the commands)

    app()


def table_of(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(
            c,
            justify="right"
            if c in ("rows", "read", "loaded", "rejected", "n", "nulled", "unmatched", "keys")
            else "left",
        )
    for r in rows:
        t.add_row(*[f"{v:,}" if isinstance(v, int) else str(v) for v in r])
    return t


def open_project(project: Path) -> Project:
    try:
        return Project.open(project)
    except PersonaeError as err:
        fail(err)
        raise  # unreachable
