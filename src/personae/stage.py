"""What a stage is: one declaration (name, parent stages, tables read, output tables, the
function that computes them) and the context the runner hands that function.

A stage module declares `STAGE = Stage(...)`; `personae.pipeline` lists the stages in order
and runs them. The function only computes and writes its outputs under `ctx.run_id`: the
ledger, lineage, progress, engines, atomic publishing and the order belong to the runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from personae.config import Config
from personae.errors import StoreError
from personae.store import Store
from personae.store.engine import Engine, engine_for

Progress = Callable[[str, int, int], None]


def quiet(_what: str, _done: int, _total: int) -> None:
    """A progress callback that shows nothing."""


@dataclass
class RunContext:
    """One run of one stage: where it reads and writes, and what it may read."""

    stage: str
    store: Store
    config: Config
    root: Path
    run_id: str
    parents: dict[str, str]  # parent stage -> the run id this run reads
    as_of: date | None = None  # given by the user; a stage sets the date it used
    options: dict[str, Any] = field(default_factory=dict)
    progress: Progress = quiet
    details: dict[str, Any] = field(default_factory=dict)  # kept in the ledger
    _engine: Engine | None = None

    def parent(self, stage: str) -> str:
        return self.parents[stage]

    def parent_as_of(self, stage: str) -> date:
        """The as-of date of the parent run this run reads."""
        value = self.store.run_info(self.parents[stage])["as_of"]
        if value is None:
            raise StoreError(f"The {stage} run {self.parents[stage]} has no as-of date.")
        return date.fromisoformat(str(value))

    def ingest_run(self) -> str | None:
        """The ingest run whose canonical tables this run reads: its own parent ingest, or
        the one its parents read."""
        if "ingest" in self.parents:
            return self.parents["ingest"]
        for run in self.parents.values():
            found = self.store.run_info(run)["parents"].get("ingest")
            if found:
                return str(found)
        return None

    def engine(self) -> Engine:
        """The configured engine (created once per run; the runner closes it)."""
        if self._engine is None:
            self._engine = engine_for(self.store, self.config.store, self.root, self.ingest_run())
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None


@dataclass(frozen=True)
class Stage:
    """A pipeline stage, declared once."""

    name: str
    description: str
    parents: tuple[str, ...]  # stages whose latest ok run it reads
    reads: tuple[str, ...]  # tables it reads
    outputs: tuple[str, ...]  # tables it writes (canonical or declared outputs)
    compute: Callable[[RunContext], Any]  # writes the outputs, returns the summary
    uses_engine: bool = False  # reads through the table engine (DuckDB or Spark)
    takes_as_of: bool = False  # `--as-of` means something to it
    # parent stages read when they have run on the same data (e.g. predictions for segments)
    optional_parents: tuple[str, ...] = ()
    # why the stage has nothing to do on this store (None: it has): `personae run` then
    # skips it with the reason instead of failing; run alone, it still explains itself
    skip_reason: Callable[[Store], str | None] | None = None


__all__ = ["Stage", "RunContext", "Progress", "quiet"]
