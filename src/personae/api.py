"""The documented Python API. The CLI is a thin layer over these calls.

>>> from personae import Project
>>> project = Project.init(["orders.csv"], root="shop")   # writes shop/personae.toml
>>> summary = project.ingest()
>>> project.status()["tables"]["orders"]
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

import duckdb

from personae.config import (
    CONFIG_NAME,
    Config,
    SourceConfig,
    add_sources,
    load_config,
    parse_config,
)
from personae.errors import OutputError, PersonaeError, StoreError
from personae.ingest import IngestSummary
from personae.ingest.propose import Proposal, propose
from personae.pipeline import STAGES, Runner, select_stages
from personae.predict import PredictSummary
from personae.segments import history
from personae.segments.build import SegmentsSummary
from personae.store import Store
from personae.store.schemas import TABLES
from personae.traits import TraitsSummary
from personae.traits.funnel import funnel

ExportFormat = Literal["csv", "parquet"]
# Tables of one row per thing (not per event): a second file keyed like the first describes
# the same things (init proposes mode = update); a second orders file is more orders.
ENTITY_TABLES = ("customers", "accounts")
# What a run left running by a killed process says (as the next writer records it).
INTERRUPTED = "the process running it stopped before it finished; nothing it wrote was kept"
RUNS_SQL = (
    'SELECT run_id, stage, status, error, as_of, started_at, seconds, parents, "rows" FROM runs'
)


class Project:
    """A folder with a personae.toml and the store it names."""

    def __init__(self, root: Path, config: Config) -> None:
        self.root = Path(root)
        self.config = config

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def store_path(self) -> Path:
        path = Path(self.config.store.path)
        return path if path.is_absolute() else self.root / path

    @classmethod
    def open(cls, root: str | Path = ".") -> Project:
        """Open the project whose personae.toml is in `root`."""
        root = Path(root)
        return cls(root, load_config(root / CONFIG_NAME))

    @classmethod
    def init(
        cls,
        files: Sequence[str | Path],
        root: str | Path = ".",
        progress: Callable[[str, int, int], None] | None = None,
    ) -> tuple[Project, list[Proposal]]:
        """Sniff `files` and write (or extend) `root/personae.toml` with a source for each.

        Database tables are given as `URL#table` or `URL#SELECT ...`, e.g.
        `sqlite:///shop.db#orders`."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        path = root / CONFIG_NAME
        existing = load_config(path).sources if path.exists() else {}
        taken = set(existing)
        keys = {(s.table, _key_column(s)) for s in existing.values()}
        proposals = []
        for i, f in enumerate(files):
            if progress:
                progress(str(f), i, len(files))
            p = propose(str(f), root, taken)
            key = (p.source.table, _key_column(p.source))
            if key[1] and key in keys and p.source.table in ENTITY_TABLES:
                # A second file keyed like an earlier one adds to those rows (e.g. closed
                # deals for leads) rather than repeating them.
                p.source.mode = "update"
                p.notes.append(
                    f"{key[1]} also keys an earlier {p.source.table} source: "
                    "mode = update fills in those rows"
                )
            keys.add(key)
            taken.add(p.name)
            proposals.append(p)
        add_sources(path, None, [(p.name, p.source, p.notes, p.unmapped) for p in proposals])
        return cls.open(root), proposals

    def store(self, read_only: bool = False) -> Store:
        """Open the store (creating it, unless read_only). Writers only: a reader that must
        not wait for a running stage opens `reader()`."""
        return Store(
            self.store_path,
            memory_limit=self.config.store.memory_limit,
            threads=self.config.store.threads,
            read_only=read_only,
        )

    def reader(self) -> Store:
        """The last published snapshot of the store, read-only: never waits for a writer."""
        return Store.published(
            self.store_path,
            memory_limit=self.config.store.memory_limit,
            threads=self.config.store.threads,
        )

    def run(
        self,
        only: Sequence[str] | None = None,
        start: str | None = None,
        as_of: date | None = None,
        engine: str | None = None,
        sources: list[str] | None = None,
        force: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Run the pipeline's stages in order (all; `only` these; or from `start` on) and
        return each stage's summary by name. `as_of` is the traits date, `engine` overrides
        [store] engine, `sources` limits ingest to those sources."""
        stages = select_stages(only, start)
        if as_of is not None and not any(s.takes_as_of for s in stages):
            raise PersonaeError(
                f"--as-of is the date traits describe, and none of the stages to run "
                f"({', '.join(s.name for s in stages)}) computes traits; the others take "
                "the date of the traits run they read. Run from traits: "
                "`personae run --from traits --as-of DATE`."
            )
        config = self.with_settings(engine=engine)
        with self.store() as store:
            runner = Runner(store, config, self.root, progress)
            return runner.run(stages, as_of, {"ingest": {"sources": sources, "force": force}})

    def ingest(
        self,
        sources: list[str] | None = None,
        force: bool = False,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> IngestSummary:
        """Load the named sources (all by default) into the canonical tables; `force` reads
        them again even when their files and settings are unchanged."""
        result: IngestSummary = self.run(
            ["ingest"], sources=sources, force=force, progress=progress
        )["ingest"]
        return result

    def traits(
        self,
        as_of: date | None = None,
        engine: str | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> TraitsSummary:
        """Compute and store every customer's traits as of a date (default: the config's
        [traits] as_of, else the last order date). `engine` overrides [store] engine."""
        result: TraitsSummary = self.run(["traits"], as_of=as_of, engine=engine, progress=progress)[
            "traits"
        ]
        return result

    def predict(
        self,
        engine: str | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> PredictSummary:
        """Fit the purchase and spend models on the latest traits and store predictions.
        `engine` overrides [store] engine."""
        result: PredictSummary = self.run(["predict"], engine=engine, progress=progress)["predict"]
        return result

    def segment(
        self,
        engine: str | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> SegmentsSummary:
        """Build every segmentation (ready-made and [segmentations.NAME]) over the latest
        traits, with the predictions made from them when there are any."""
        result: SegmentsSummary = self.run(["segments"], engine=engine, progress=progress)[
            "segments"
        ]
        return result

    def segments(self, run: str | date | None = None) -> dict[str, Any]:
        """The segmentations of the latest segments run (or a run id, or as of a date), with
        sizes and quality."""
        with self.reader() as store:
            return history.overview(store, None if run is None else str(run))

    def segmentation(self, name: str, run: str | date | None = None) -> dict[str, Any]:
        """One segmentation's segments with their shares, quality and distinguishing traits."""
        with self.reader() as store:
            return history.show(store, name, None if run is None else str(run))

    def members(
        self,
        segment: str,
        segmentation: str | None = None,
        as_of: str | date | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        """The customers in a segment at the latest run, or as of a past run (a run id or a
        date: the latest run as of that date)."""
        with self.reader() as store:
            return history.members(store, segment, segmentation, as_of, limit, offset)

    def segments_diff(self, a: str | date, b: str | date, segmentation: str) -> dict[str, Any]:
        """Who moved from which segment to which between two runs (ids or as-of dates)."""
        with self.reader() as store:
            return history.diff(store, a, b, segmentation)

    def with_settings(self, engine: str | None = None) -> Config:
        """The config with settings overridden (from the CLI or this API), validated like
        the file: an unknown engine is an error that lists the engines."""
        if not engine:
            return self.config
        data = self.config.model_dump()
        data["store"]["engine"] = engine
        return parse_config(data, self.config_path, origin="--engine")

    def funnel(self, by: str | None = None) -> list[dict[str, Any]]:
        """Customers per buying-journey stage and conversion, overall or by a trait."""
        with self.reader() as store:
            return funnel(store, by)

    def status(self) -> dict[str, Any]:
        """What is in the store: sources, row counts, rejects and recent runs."""
        if not self.store_path.exists():
            return {
                "store": str(self.store_path),
                "exists": False,
                "tables": {},
                "sources": [],
                "runs": [],
                "lineage": {},
                "rejects": {},
            }
        with self.reader() as store:
            names = set(store.table_names())
            tables = {t: store.count(t) for t in TABLES if t in names}
            rejects = {
                t: store.query(
                    f'SELECT reason, kept, count(*) AS n FROM "rejects_{t}" GROUP BY ALL '
                    "ORDER BY n DESC"
                )
                for t in TABLES
                if f"rejects_{t}" in names and store.count(f"rejects_{t}")
            }
            sources = store.query(
                "SELECT source_id, name, table_name, location, rows_read, rows_loaded, "
                "rows_rejected, values_nulled, ingested_at FROM sources "
                "WHERE retired_run IS NULL ORDER BY ingested_at"
            )
            runs = store.query(f"{RUNS_SQL} ORDER BY started_at DESC LIMIT 10")
            lineage = {
                stage.name: store.lineage(run)
                for stage in STAGES
                if (run := store.latest_run(stage.name))
            }
            attributes = {
                t: [
                    r["k"]
                    for r in store.query(
                        f'SELECT DISTINCT unnest(json_keys(attributes)) AS k FROM "{t}" '
                        "WHERE attributes IS NOT NULL ORDER BY k"
                    )
                ]
                for t, n in tables.items()
                if n
            }
        left = self._left_running()
        runs = left + [r for r in runs if r["run_id"] not in {x["run_id"] for x in left}]
        runs.sort(key=lambda r: r["started_at"], reverse=True)
        for r in runs:
            for key in ("parents", "rows"):
                if not isinstance(r[key], dict):
                    r[key] = json.loads(r[key]) if r[key] else {}
        return {
            "store": str(self.store_path),
            "exists": True,
            "tables": tables,
            "sources": sources,
            "rejects": rejects,
            "runs": runs[:10],
            "lineage": {
                stage: [
                    {k: r[k] for k in ("run_id", "stage", "as_of", "finished_at")} for r in runs_
                ]
                for stage, runs_ in lineage.items()
            },
            "attributes": {t: a for t, a in attributes.items() if a},
        }

    def _left_running(self) -> list[dict[str, Any]]:
        """Runs that the writer's store still calls `running` while no process holds it:
        the process running them was killed. They are shown as interrupted (the next writer
        marks them so; they wrote nothing). A store held by a writer is not opened, so a run
        in progress is never called interrupted."""
        try:
            with Store(
                self.store_path,
                read_only=True,
                memory_limit=self.config.store.memory_limit,
                threads=self.config.store.threads,
            ) as store:
                rows = store.query(f"{RUNS_SQL} WHERE status = 'running'")
        except (PersonaeError, duckdb.Error):
            return []
        for r in rows:
            r["status"] = "interrupted"
            r["error"] = INTERRUPTED
        return rows

    def export(
        self,
        table: str,
        out: str | Path,
        fmt: ExportFormat | None = None,
        *,
        raw: bool = False,
    ) -> int:
        """Write a table of the store to a CSV or Parquet file; returns the row count.

        The format follows the file name (.csv, .parquet) unless `fmt` is given; a name with
        another extension (.xlsx, .json, ...) is refused rather than written in a format it
        does not say. In CSV, text cells that start with =, +, -, @, a tab or a carriage
        return get a leading single quote so that a spreadsheet shows them instead of
        running them as formulas; `raw=True` writes them as stored. Parquet is written as
        stored. The file appears whole or not at all (written beside it, then renamed)."""
        out = Path(out)
        fmt = export_format(out, fmt)
        check_output(out)
        with self.reader() as store:
            if table not in store.table_names():
                raise StoreError(
                    f"No table '{table}' in {self.store_path} (tables: "
                    f"{', '.join(store.table_names())})."
                )
            source, params = store.latest_rows(table)
            n = store.con.execute(f"SELECT count(*) FROM ({source})", params).fetchall()[0][0]
            columns = [r[0] for r in store.con.execute(f'DESCRIBE "{table}"').fetchall()]
            if not n and "run_id" in columns:  # a stage's output no run has written yet
                stage = next((f"the {s.name} stage" for s in STAGES if table in s.outputs), None)
                raise StoreError(
                    f"No run has written {table} yet: there is nothing to export.",
                    hint=f"Run {stage or 'the stage that writes it'} first: `personae run` "
                    "runs every stage.",
                )
            if fmt == "csv" and not raw:
                source = _formula_guard(store, source, params)
            opts = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
            partial = out.with_name(f".{out.name}.partial")
            target = str(partial).replace("'", "''")
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                store.con.execute(f"COPY ({source}) TO '{target}' ({opts})", params)
                os.replace(partial, out)
            except (OSError, duckdb.Error) as err:
                partial.unlink(missing_ok=True)
                raise write_error(out, err) from None
            return int(n)


EXPORT_SUFFIXES: dict[str, ExportFormat] = {".csv": "csv", ".parquet": "parquet"}
# A text cell starting with one of these is read as a formula by spreadsheets (a regular
# expression for DuckDB: =, +, -, @, tab, carriage return).
FORMULA_START = r"^[=+\-@\t\r]"


def export_format(out: Path, fmt: str | None) -> ExportFormat:
    """The format to write `out` in: `fmt`, else from the name; never one the name
    contradicts (no CSV under .xlsx)."""
    if fmt is not None and fmt not in ("csv", "parquet"):
        raise OutputError(f"--format must be csv or parquet, not '{fmt}'.")
    suffix = out.suffix.lower()
    named = EXPORT_SUFFIXES.get(suffix)
    if suffix and not named:
        raise OutputError(
            f"{out}: personae writes CSV (.csv) and Parquet (.parquet), not '{suffix}'. "
            f"Name the file {out.stem}.csv (spreadsheets open it) or {out.stem}.parquet."
        )
    if fmt and named and fmt != named:
        raise OutputError(f"{out}: the name says {named} but --format says {fmt}; make them agree.")
    chosen = named or fmt or "csv"
    return "parquet" if chosen == "parquet" else "csv"


def check_output(out: Path) -> None:
    """A clear error when `out` cannot be a file: it is a folder, or a folder on its way is
    a file."""
    if out.is_dir():
        raise OutputError(f"{out} is a folder; give a file name, e.g. --out {out / 'export.csv'}.")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(
                    f"Cannot write {out}: {parent} is a file, not a folder. Choose another path."
                )
            break


def write_error(out: Path, err: BaseException) -> PersonaeError:
    """A PersonaeError for a failed write of `out`. A full disk says how much had been
    written when it filled up and how much space is left."""
    text = str(err)
    if getattr(err, "errno", None) == errno.ENOSPC or "No space left" in text:
        folder = next((p for p in (out.parent, *out.parents) if p.exists()), Path("."))
        free = shutil.disk_usage(folder).free
        written = [int(a) + int(b) for a, b in re.findall(r"offset=(\d+), size=(\d+)", text)]
        needed = f"more than {human_size(max(written))}" if written else "more than is free"
        return OutputError(
            f"The disk holding {out} is full: writing it needed {needed}, and "
            f"{human_size(free)} is free. Nothing was written; free some space or choose "
            "another --out. The store is unchanged."
        )
    if isinstance(err, PermissionError) or "Permission denied" in text:
        return OutputError(f"Cannot write {out}: permission denied. Choose another --out.")
    first = text.splitlines()[0] if text else repr(err)
    return OutputError(f"Cannot write {out}: {first}.")


def human_size(n: float) -> str:
    """Bytes as a short size in powers of 1000 (what `df -H` prints)."""
    if n < 1000:
        return f"{n:,.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:,.1f} {unit}"
    return f"{n / 1000:,.1f} TB"


def _formula_guard(store: Store, source: str, params: list[Any]) -> str:
    """`source` with every text cell that a spreadsheet would run as a formula prefixed by a
    single quote. Only text columns: a negative number stays a number."""
    cols = []
    for name, sql_type, *_ in store.con.execute(f"DESCRIBE ({source})", params).fetchall():
        col = '"' + str(name).replace('"', '""') + '"'
        if sql_type == "VARCHAR":
            cols.append(
                f"CASE WHEN regexp_matches({col}, '{FORMULA_START}') "
                f"THEN concat(chr(39), {col}) ELSE {col} END AS {col}"
            )
        else:
            cols.append(col)
    return f"SELECT {', '.join(cols)} FROM ({source})"


def _key_column(src: SourceConfig) -> str | None:
    key = TABLES[src.table].key[0]
    return next((c for c, t in src.columns.items() if t == key), None)


__all__ = ["Project", "PersonaeError"]
