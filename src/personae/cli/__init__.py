"""The `personae` command line: a thin layer over `personae.api`.

Every command takes `--json` for machine-readable output and `--project` for the folder of
personae.toml. Errors from personae print one clear message and exit with status 1.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import duckdb
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from personae.api import Project, human_size
from personae.errors import (
    ConfigError,
    OutputError,
    PersonaeError,
    SourceError,
    StoreError,
)
from personae.store import damaged_message, readable_hint

app = typer.Typer(
    name="personae",
    help="Customer data in; traits, segments and data-grounded personas out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # docstrings are wrapped for the source; click joins their lines into paragraphs
    rich_markup_mode=None,
)
PIPED_WIDTH = 160  # rich's 80 columns cut table cells short in logs and `make demo`


def _console(stderr: bool = False) -> Console:
    """Rich's console; output that is not a terminal (and no COLUMNS says otherwise) is
    PIPED_WIDTH wide, so a table piped or logged keeps whole names."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPED_WIDTH if piped else None)


console = _console()
err_console = _console(stderr=True)

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Folder holding personae.toml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        metavar="<duckdb|spark>", help="duckdb or spark; overrides [store] engine for this run."
    ),
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


# What a command catches and turns into a message (fail): personae's own errors, and the
# operating system's and DuckDB's that a user can act on (a full disk, a damaged store).
HANDLED = (PersonaeError, OSError, duckdb.Error)
T = TypeVar("T")
GENERIC_HINTS = {
    ConfigError: "Fix the setting the message names in personae.toml (docs/configuration.md).",
    SourceError: "Fix the source or its settings in personae.toml (docs/loading-real-files.md).",
    StoreError: "See `personae status` for what the store holds.",
    OutputError: "Choose another --out.",
    PersonaeError: "See the command's --help.",
}


def as_personae_error(err: BaseException, store: Path | None = None) -> PersonaeError | None:
    """`err` as a PersonaeError a user can act on, or None when it is a bug to report."""
    if isinstance(err, PersonaeError):
        return err
    text = str(err)
    named = re.search(r'file "([^"]+)"', text)
    filename = getattr(err, "filename", None)
    path = Path(named[1]) if named else Path(filename) if filename else store
    if getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in text:
        where = path or Path(".")
        folder = next((p for p in (where, *where.parents) if p.exists()), Path("."))
        free = human_size(shutil.disk_usage(folder).free)
        return StoreError(
            f"The disk is full: writing {where} needed more space than the {free} left on "
            "it. The command stopped and kept nothing it wrote; the store is as it was "
            "before it.",
            hint=f"Free some space on the disk holding {where} (or move the store: [store] "
            "path), then run the command again.",
        )
    if isinstance(err, duckdb.Error) and re.search(
        r"Corrupt database file|not a valid DuckDB database|Could not read enough bytes", text
    ):
        where = path or Path("the store")
        if where.suffix != ".duckdb":
            return StoreError(f"The store is damaged: {text.splitlines()[0]}.")
        return StoreError(
            f"{damaged_message(where, err)} Tables stored in intact parts of it may still "
            "export one at a time (`personae export TABLE --out FILE.csv`).",
            hint=readable_hint(where),
        )
    if isinstance(err, OSError):
        what = f"{err.strerror or text}" + (f": {err.filename}" if err.filename else "")
        return PersonaeError(f"{what}.", hint="Check the path and its permissions.")
    return None


def error_code(err: PersonaeError) -> str:
    """config_error, source_error, store_error, output_error or personae_error."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(err).__name__).lower()


def fail(err: BaseException, as_json: bool = False, store: Path | None = None) -> NoReturn:
    """Print an error a user can act on and exit with status 1: one JSON object on stdout
    with --json (code, message, hint), a message on stderr always. Anything that is not such
    an error is a bug and raises with its traceback."""
    known = as_personae_error(err, store)
    if known is None:
        raise err
    hint = known.hint or next(
        (h for cls, h in GENERIC_HINTS.items() if isinstance(known, cls)), None
    )
    if as_json:
        print_json({"error": {"code": error_code(known), "message": str(known), "hint": hint}})
    err_console.print(f"[bold red]error:[/] {escape(str(known))}", highlight=False, soft_wrap=True)
    if known.hint and known.hint not in str(known):
        err_console.print(f"[bold]hint:[/] {escape(known.hint)}", highlight=False, soft_wrap=True)
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


def _print_version(asked: bool) -> None:
    if asked:
        from personae import __version__

        console.print(f"personae {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print personae's version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """personae turns customer files into traits, segments and personas."""
    # What the library logs as a warning is also in the summary each command prints (and in
    # --json), so without --verbose only errors are logged: every warning shows once.
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    register()

    app()


def register() -> None:
    """Import the command modules, which register their commands on `app`."""
    from personae.cli import commands, segments  # noqa: F401


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


def open_project(project: Path, as_json: bool = False) -> Project:
    try:
        return Project.open(project)
    except HANDLED as err:
        fail(err, as_json)


def answer(project: Path, as_json: bool, ask: Callable[..., T], progress: str | None = None) -> T:
    """Open the project and ask it: `ask(project)`, or `ask(project, step_callback)` under a
    progress bar named `progress`. An error ends the command through `fail`; with --json the
    answer is printed as JSON and the command ends; otherwise the answer comes back to be
    printed for people."""
    proj = open_project(project, as_json)
    try:
        if progress is None:
            data = ask(proj)
        else:
            with progress_bar(as_json) as bar:
                data = ask(proj, step_callback(bar, progress))
    except HANDLED as err:
        fail(err, as_json, proj.store_path)
    if as_json:
        print_json(data)
        raise typer.Exit()
    return data
