"""The pipeline: the stages in order and the one runner every stage goes through.

The runner owns what all stages share: the run ledger (run id, stage, the parent runs it
read, as-of date, engine, config hash, status, timings, rows written per table), progress,
atomic publishing (a run's writes and its `ok` commit together; a failed or interrupted run
leaves nothing behind and the previous outputs served) and the order of stages. Adding a
stage is one module declaring `STAGE` and one line in `STAGES`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from personae import ingest, predict, traits
from personae.config import Config
from personae.errors import PersonaeError, StoreError, closest
from personae.segments import build as segments
from personae.stage import Progress, RunContext, Stage, quiet
from personae.store import Store
from personae.store.schemas import TABLES, VIEW_ROWS

__all__ = ["STAGES", "Runner", "Skipped", "select_stages", "stage_graph", "config_hash"]
log = logging.getLogger(__name__)

STAGES: tuple[Stage, ...] = (ingest.STAGE, traits.STAGE, predict.STAGE, segments.STAGE)


def _by_name(name: str, stages: Sequence[Stage]) -> Stage:
    for stage in stages:
        if stage.name == name:
            return stage
    raise PersonaeError(
        f"No stage named '{name}' (stages: {', '.join(s.name for s in stages)})."
        + closest(name, [s.name for s in stages])
    )


def select_stages(
    only: Sequence[str] | None = None,
    start: str | None = None,
    stages: Sequence[Stage] = STAGES,
) -> list[Stage]:
    """The stages to run, in pipeline order: `only` these, or every stage from `start` on,
    or all."""
    if only and start:
        raise PersonaeError("Give --only or --from, not both.")
    if only:
        chosen = {_by_name(n, stages).name for n in only}
        return [s for s in stages if s.name in chosen]
    if start:
        first = _by_name(start, stages)
        return list(stages[list(stages).index(first) :])
    return list(stages)


def config_hash(config: Config) -> str:
    """A short hash of the settings a run used (for the ledger: same hash, same settings)."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:12]


class Runner:
    """Runs stages on one open (writable) store and publishes what they committed."""

    def __init__(
        self,
        store: Store,
        config: Config,
        root: Path,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.root = Path(root)
        self.progress = progress or quiet
        self.changed = False

    def run(
        self,
        stages: Sequence[Stage],
        as_of: date | None = None,
        options: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Run `stages` in order; returns each stage's summary. Whatever happens, the runs
        that finished (and the ledger) are published for readers at the end."""
        results: dict[str, Any] = {}
        try:
            for stage in stages:
                reason = stage.skip_reason(self.store) if stage.skip_reason else None
                if reason and len(stages) > 1:
                    log.warning("%s skipped: %s", stage.name, reason)
                    results[stage.name] = Skipped(stage.name, reason)
                    continue
                results[stage.name] = self.run_stage(stage, as_of, (options or {}).get(stage.name))
        finally:
            if self.changed:
                self.store.publish()
        return results

    def run_stage(
        self, stage: Stage, as_of: date | None = None, options: dict[str, Any] | None = None
    ) -> Any:
        """One run of one stage: ledger row, then its writes and `ok` in one transaction."""
        store = self.store
        parents = {}
        for parent in stage.parents:
            run = store.latest_run(parent)
            if run is None:
                raise StoreError(
                    f"No {parent} run yet: `personae {stage.name}` reads its output. Run "
                    f"`personae {parent}` first, or `personae run`."
                )
            parents[parent] = run
        for parent in stage.optional_parents:
            run = store.latest_run(parent)
            if run is not None and _reads_same(store, run, parents):
                parents[parent] = run
        engine = self.config.store.engine if stage.uses_engine else "duckdb"
        run_id = store.start_run(
            stage.name,
            parents=parents,
            engine=engine,
            config_hash=config_hash(self.config),
        )
        self.changed = True
        ctx = RunContext(
            stage=stage.name,
            store=store,
            config=self.config,
            root=self.root,
            run_id=run_id,
            parents=parents,
            as_of=as_of if stage.takes_as_of else None,
            options=options or {},
            progress=lambda what, done, total: self.progress(f"{stage.name}: {what}", done, total),
        )
        log.info("run %s (reads %s)", run_id, parents or "nothing")
        store.con.execute("BEGIN TRANSACTION")
        try:
            summary = stage.compute(ctx)
            store.finish_run(
                run_id,
                as_of=str(ctx.as_of) if ctx.as_of else None,
                rows=self._rows_written(stage, run_id),
                details=ctx.details,
            )
            store.collect_retired()
            store.prune_outputs(self.config.store.keep_runs)
            store.con.execute("COMMIT")
        except BaseException as err:
            _rollback(store)
            status = "failed" if isinstance(err, Exception) else "interrupted"
            store.finish_run(run_id, error=str(err) or type(err).__name__, status=status)
            if isinstance(err, duckdb.OutOfMemoryException):
                raise _out_of_memory(stage.name, self.config.store.memory_limit, err) from None
            raise
        finally:
            ctx.close()
        return summary

    def _rows_written(self, stage: Stage, run_id: str) -> dict[str, int]:
        """Rows the run wrote to each of its output tables: stage outputs (and `sources`)
        carry the run id, canonical rows and rejects the id of a source the run loaded."""
        rows = {}
        for table in stage.outputs:
            where = "run_id = ?"
            if table in TABLES or table.startswith("rejects_"):
                where = "source_id IN (SELECT source_id FROM sources WHERE run_id = ?)"
            sql = VIEW_ROWS.get(table, f'SELECT count(*) FROM "{table}" WHERE {where}')
            rows[table] = int(self.store.con.execute(sql, [run_id]).fetchall()[0][0])
        return rows


@dataclass
class Skipped:
    """A stage `personae run` left out because the data gives it nothing to do."""

    stage: str
    reason: str


def _reads_same(store: Store, run: str, parents: dict[str, str]) -> bool:
    """Whether an optional parent run read the same runs as the required parents (e.g. the
    predictions were made from the traits run segments reads)."""
    read = store.run_info(run)["parents"]
    return all(read.get(stage, run_id) == run_id for stage, run_id in parents.items())


def _out_of_memory(stage: str, limit: str, err: Exception) -> StoreError:
    """DuckDB's out-of-memory error as what to change, instead of a traceback."""
    detail = str(err).splitlines()[0]
    return StoreError(
        f"The {stage} stage ran out of memory: DuckDB needed more than [store] memory_limit = "
        f'"{limit}" ({detail}). Nothing of this run was kept.',
        hint="Raise memory_limit in the [store] section of personae.toml (a size such as 8GB, "
        'or a share of this machine\'s memory such as "80%"), or lower [store] threads: each '
        "thread needs working memory of its own.",
    )


def _rollback(store: Store) -> None:
    try:
        store.con.execute("ROLLBACK")
    except Exception as err:  # the transaction may already be gone with the error
        log.debug("rollback: %s", err)


def stage_graph(stages: Sequence[Stage] = STAGES) -> str:
    """The stages, what each reads and writes, as a Markdown table and a Mermaid graph
    (docs/architecture.md embeds it; a test checks it is current)."""
    lines = [
        "| stage | reads runs of | reads tables | writes |",
        "|---|---|---|---|",
    ]
    for s in stages:
        lines.append(
            f"| `{s.name}` | {', '.join(s.parents) or '-'} | {', '.join(s.reads) or '-'} | "
            f"{', '.join(s.outputs)} |"
        )
    lines += ["", "```mermaid", "graph LR"]
    for s in stages:
        for p in s.parents:
            lines.append(f"  {p} --> {s.name}")
    lines.append("```")
    return "\n".join(lines)
