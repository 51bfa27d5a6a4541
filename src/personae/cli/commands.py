"""The commands of `personae`. Each one calls one function of `personae.api`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from personae.api import Project, export_format
from personae.cli import (
    HANDLED,
    EngineOpt,
    JsonOpt,
    ProjectOpt,
    answer,
    app,
    console,
    err_console,
    fail,
    open_project,
    print_json,
    progress_bar,
    step_callback,
    table_of,
)
from personae.errors import PersonaeError
from personae.ingest import IngestSummary
from personae.predict import PredictSummary
from personae.store.schemas import REJECT_REASONS, TABLES
from personae.traits import TraitsSummary


@app.command()
def init(
    files: Annotated[
        list[str],
        typer.Argument(
            help="Files (CSV/TSV/whitespace text, .gz, Parquet, JSON lines, .xlsx) or database "
            "tables as URL#table or URL#SELECT ... (duckdb:///f.duckdb#t, sqlite:///f.db#t, "
            "postgresql://user@host/db#t).",
        ),
    ],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Sniff FILES and write personae.toml with a commented source for each.

    Guesses the format, encoding, delimiter, header, date formats, the canonical table and
    the column mapping. Run it again with more files to add sources; edits are kept.
    """
    try:
        with progress_bar(as_json) as bar:
            proj, proposals = Project.init(files, project, step_callback(bar, "sniffing"))
    except HANDLED as err:
        fail(err, as_json)
    if as_json:
        print_json(
            [
                {
                    "name": p.name,
                    "table": p.source.table,
                    "columns": p.source.columns,
                    "attributes": p.unmapped,
                    "date_formats": p.source.date_formats,
                    "notes": p.notes,
                    "rows": p.staged.rows,
                }
                for p in proposals
            ]
        )
        return
    for p in proposals:
        rows = [[src, dst] for src, dst in p.source.columns.items()]
        rows += [[c, "(attributes)"] for c in p.unmapped]
        console.print(
            table_of(
                f"{p.name} -> {p.source.table} ({p.staged.rows:,} rows, {p.staged.kind})",
                ["source column", "canonical"],
                rows,
            )
        )
        for note in p.notes:
            console.print(f"  note: {escape(note)}")
    console.print(f"Wrote {proj.config_path}. Check the mappings, then run `personae ingest`.")


CHANGES = ("added", "changed", "removed")


def print_ingest(summary: IngestSummary) -> None:
    rows = [
        [
            s.name,
            s.table,
            s.status,
            s.rows_read,
            s.rows_loaded,
            s.rows_rejected,
            sum(s.values_nulled.values()),
        ]
        for s in summary.sources
    ]
    console.print(
        table_of(
            "Sources", ["source", "table", "status", "read", "loaded", "rejected", "nulled"], rows
        )
    )
    for s in summary.sources:
        detail = [[f"rejected: {k}", v] for k, v in s.rejected.items()]
        detail += [[f"value nulled: {k}", v] for k, v in s.values_nulled.items()]
        detail += [[f"flagged: {k}", v] for k, v in s.flags.items()]
        detail += [[f"derived {k}", v] for k, v in s.derived.items()]
        if s.replaced:
            detail += [[f"{k} (vs {', '.join(s.replaced)})", getattr(s, k)] for k in CHANGES]
            detail = [d for d in detail if d[1] is not None]
        if s.updated is not None:
            detail += [["existing rows updated", s.updated]]
            detail += [["values filled in or changed", s.values_changed]]
        if detail:
            console.print(table_of(f"{s.name}", ["what", "rows"], detail))
        if s.attributes:
            console.print(f"  {s.name}: kept as attributes: {escape(', '.join(s.attributes))}")
    console.print(
        table_of("Tables", ["table", "rows"], [[t, n] for t, n in summary.tables.items()])
    )
    bad = [lk for lk in summary.links if lk.unmatched]
    if bad:
        console.print(
            table_of(
                "Unmatched keys",
                ["table.column", "points to", "keys", "unmatched", "examples"],
                [
                    [
                        f"{lk.table}.{lk.column}",
                        lk.target,
                        lk.keys,
                        lk.unmatched,
                        ", ".join(lk.examples),
                    ]
                    for lk in bad
                ],
            )
        )
    with_rejects = [s for s in summary.sources if s.rows_rejected or s.values_nulled]
    if with_rejects:
        name = f"rejects_{with_rejects[0].table}"
        console.print(
            "Rejected rows and nulled values are in the rejects_<table> tables: "
            f"`personae export {name} --out {name}.csv`."
        )
    for s in summary.sources:
        for warning in s.warnings:
            console.print(f"[bold yellow]Warning[/]: source {s.name}: {escape(warning)}")


@app.command()
def ingest(
    sources: Annotated[
        list[str] | None, typer.Argument(help="Source names from personae.toml; all when omitted.")
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", "-s", metavar="<source>", help="A source to ingest (repeat for several)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Read the sources again even if nothing changed.")
    ] = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Read the sources into the store's canonical tables, with rejects and a summary.

    Rows that cannot be used go to rejects_<table> with the source, line, raw values and a
    reason code; usable but special rows are flagged. A source whose file and settings are
    unchanged adds nothing; when either changed, its rows are replaced (added, changed and
    removed rows are reported). A folder or glob source appends each new file.
    """
    names = [*(sources or []), *(source or [])] or None
    print_ingest(
        answer(project, as_json, lambda p, bar: p.ingest(names, force, progress=bar), "ingest")
    )


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the data set to.")],
    customers: Annotated[int, typer.Option(help="Number of customers.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 42,
    start: Annotated[
        str, typer.Option(metavar="<YYYY-MM-DD>", help="First date of the history (YYYY-MM-DD).")
    ] = "2022-01-01",
    end: Annotated[
        str, typer.Option(metavar="<YYYY-MM-DD>", help="Last date of the history (YYYY-MM-DD).")
    ] = "2024-12-31",
    fmt: Annotated[
        str, typer.Option("--format", metavar="<csv|parquet>", help="csv or parquet.")
    ] = "csv",
    as_json: JsonOpt = False,
) -> None:
    """Write a synthetic multi-table data set with planted segments and their truth.

    Files: customers, orders, events, responses, feedback, accounts (+ truth/ and a ready
    personae.toml) in OUT_DIR.
    """
    from personae.synth import PROGRESS_STEPS, generate

    if fmt not in ("csv", "parquet"):
        fail(PersonaeError(f"--format must be csv or parquet, not '{fmt}'."), as_json)
    try:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
    except ValueError as err:
        fail(PersonaeError(f"--start/--end must be YYYY-MM-DD dates ({err})."), as_json)
    try:
        with progress_bar(as_json) as bar:
            task = bar.add_task("synth", total=PROGRESS_STEPS)
            result = generate(
                out_dir,
                customers,
                seed,
                first,
                last,
                fmt,
                progress=lambda m: bar.update(task, description=f"synth {m}", advance=1),
            )
    except HANDLED as err:
        fail(err, as_json)
    if as_json:
        print_json(result)
        return
    console.print(
        table_of(
            f"Synthetic data in {result.out_dir} ({result.seconds} s)",
            ["file", "rows"],
            [[k, v] for k, v in result.rows.items()],
        )
    )
    console.print(f"Truth: {out_dir}/truth/. Ingest it with `personae ingest -p {out_dir}`.")


@app.command()
def status(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Show what is in the store: sources, tables and row counts, rejects and recent runs."""
    info = answer(project, as_json, lambda p: p.status())
    if not info["exists"]:
        console.print(f"No store yet at {info['store']}. Run `personae ingest`.")
        return
    console.print(f"Store: {info['store']}")
    console.print(
        table_of("Tables", ["table", "rows"], [[t, n] for t, n in info["tables"].items()])
    )
    console.print(
        table_of(
            "Sources",
            ["source", "table", "read", "loaded", "rejected", "nulled"],
            [
                [
                    s["source_id"],
                    s["table_name"],
                    s["rows_read"],
                    s["rows_loaded"],
                    s["rows_rejected"],
                    s["values_nulled"],
                ]
                for s in info["sources"]
            ],
        )
    )
    rej = [
        [t, r["reason"], "nulled" if r["kept"] else "rejected", r["n"]]
        for t, rs in info["rejects"].items()
        for r in rs
    ]
    if rej:
        console.print(table_of("Rejects", ["table", "reason", "action", "n"], rej))
    for t, attrs in info.get("attributes", {}).items():
        console.print(f"{t}: extra attributes: {escape(', '.join(attrs))}")
    console.print(
        table_of(
            "Recent runs",
            ["run", "stage", "status", "seconds", "read runs"],
            [
                [
                    r["run_id"],
                    r["stage"],
                    r["status"],
                    f"{r['seconds'] or 0:.2f}",
                    ", ".join(r["parents"].values()),
                ]
                for r in info["runs"]
            ],
        )
    )
    stopped = [r["run_id"] for r in info["runs"] if r["status"] == "interrupted"]
    if stopped:
        console.print(
            f"[yellow]interrupted:[/] {escape(', '.join(stopped))}: the process running "
            f"{'it' if len(stopped) == 1 else 'them'} stopped before the end; nothing "
            f"{'it' if len(stopped) == 1 else 'they'} wrote was kept."
        )
    if info["lineage"]:
        console.print(
            table_of(
                "What readers see (latest ok run of each stage, and the runs it read)",
                ["stage", "lineage"],
                [
                    [stage, " <- ".join(r["run_id"] for r in chain)]
                    for stage, chain in info["lineage"].items()
                ],
            )
        )


@app.command()
def export(
    table: Annotated[
        str,
        typer.Argument(help="Table to export, e.g. orders, customers, rejects_orders, sources."),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="File to write: a .csv or .parquet name.")
    ],
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", metavar="<csv|parquet>", help="csv or parquet; default from the file name."
        ),
    ] = None,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="CSV: write text cells as stored. By default a cell starting with =, +, -, @, "
            "a tab or a carriage return gets a leading ' so spreadsheets do not run it.",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Write a table of the store to a CSV or Parquet file.

    The format follows the name (.csv or .parquet); other extensions such as .xlsx are
    refused. The file is written whole or not at all; the store is never changed.
    """
    proj = open_project(project, as_json)
    try:
        chosen = export_format(out, fmt)
        n = proj.export(table, out, chosen, raw=raw)
    except HANDLED as err:
        fail(err, as_json, proj.store_path)
    if as_json:
        print_json({"table": table, "out": str(out), "format": chosen, "rows": n})
    else:
        console.print(f"Wrote {n:,} rows of {escape(table)} to {escape(str(out))}.")


@app.command()
def traits(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="<YYYY-MM-DD>",
            help="Date the traits describe (YYYY-MM-DD); nothing after it "
            "is read. Default: [traits] as_of, else the last order date.",
        ),
    ] = None,
    engine: EngineOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Compute every customer's traits (purchase summary, RFM, ...) and store them.

    One row per customer per run in the `traits` table; `personae export traits` writes the
    latest run. Every trait is defined in docs/traits.md.
    """
    day = parse_as_of(as_of, as_json)
    print_traits(answer(project, as_json, lambda p, bar: p.traits(day, engine, bar), "traits"))


def parse_as_of(as_of: str | None, as_json: bool = False) -> date | None:
    try:
        return date.fromisoformat(as_of) if as_of else None
    except ValueError:
        fail(PersonaeError(f"--as-of must be a YYYY-MM-DD date, not '{as_of}'."), as_json)


def print_traits(summary: TraitsSummary) -> None:
    console.print(
        f"Traits of {summary.customers:,} customers ({summary.buyers:,} with a purchase) as of "
        f"{summary.as_of} on {summary.engine} in {summary.seconds} s (run {summary.run_id})."
    )
    if summary.ignored_after_as_of:
        console.print(
            f"  {summary.ignored_after_as_of:,} order lines after the as-of date were not read."
        )
    if summary.not_yet_customers:
        console.print(
            f"  {summary.not_yet_customers:,} customers first appear after the as-of date: "
            "left out (they did not exist yet)."
        )
    if summary.other_currency_lines:
        console.print(
            f"  {summary.other_currency_lines:,} order lines are not in "
            f"{summary.currency}: their amounts are left out of the money traits."
        )
    for note in summary.notes:
        console.print(f"  [yellow]note:[/] {escape(note)}")
    if summary.rfm_segments:
        console.print(
            table_of(
                "RFM segments", ["segment", "n"], [[k, v] for k, v in summary.rfm_segments.items()]
            )
        )


@app.command("funnel")
def funnel_cmd(
    by: Annotated[
        str | None, typer.Option(help="A trait to split by, e.g. country or rfm_segment.")
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show the buying-journey funnel of the latest traits run: customers per stage and the
    conversion from the stage before, overall or by a trait."""
    rows = answer(project, as_json, lambda p: p.funnel(by))
    console.print(
        table_of(
            f"Buying-journey funnel{' by ' + by if by else ''}",
            ["group", "stage", "customers", "of all", "conversion"],
            [
                [
                    r["group"],
                    r["stage"],
                    r["customers"],
                    f"{r['share_of_all']:.1%}" if r["share_of_all"] is not None else "",
                    f"{r['conversion']:.1%}" if r["conversion"] is not None else "",
                ]
                for r in rows
            ],
        )
    )


@app.command("predict")
def predict_cmd(
    engine: EngineOpt = None, project: ProjectOpt = Path("."), as_json: JsonOpt = False
) -> None:
    """Predict purchases, P(alive), churn risk, spend and CLV from the latest traits.

    Compares BG/NBD, MBG/NBD and Pareto/NBD on a calibration/holdout split (unless [predict]
    model fixes one), fits the best and Gamma-Gamma, and stores `predictions` and
    `model_evaluations`. Horizon, time unit and discount rate are in [predict]. The table work
    (holdout counts, joining the scores to every customer) runs on the engine.
    """
    print_predict(answer(project, as_json, lambda p, bar: p.predict(engine, bar), "predict"))


def print_predict(s: PredictSummary) -> None:
    for warning in (s.fallback_reason, s.holdout_note, s.spend_fallback_reason):
        if warning:
            console.print(f"[yellow]warning:[/] {escape(warning)}")
    if not s.fallback_reason:
        for name, note in s.model_notes.items():
            console.print(f"[yellow]{name}:[/] {escape(note)}")
    if s.holdout or s.baseline:
        rows = {**s.holdout, **({"baseline (past rate)": s.baseline} if s.baseline else {})}
        console.print(
            table_of(
                "Holdout comparison",
                ["model", "MAE", "predicted", "actual"],
                [
                    [
                        m,
                        f"{r['mae']:.4f}",
                        f"{r['predicted_total']:,.1f}",
                        f"{r['actual_total']:,.0f}",
                    ]
                    for m, r in rows.items()
                ],
            )
        )
    if s.holdout_verdict:
        console.print(escape(s.holdout_verdict))
    if s.holdout_warning:
        console.print(f"[yellow]warning:[/] {escape(s.holdout_warning)}")
    params = ", ".join(f"{k} {v:.4g}" for k, v in s.params.items())
    console.print(
        f"Model: {s.model}{f' ({params})' if params else ''}; horizon {s.horizon} "
        f"(the model's time unit: {s.time_unit.rstrip('s')}); "
        f"{s.customers:,} customers scored; "
        + (
            f"total CLV {s.total_clv:,.2f}."
            if s.total_clv is not None
            else "spend unknown (no amounts): no CLV."
        )
    )
    if s.churn_bands:
        console.print(
            table_of("Churn risk", ["band", "n"], [[k, v] for k, v in s.churn_bands.items()])
        )
    if s.churn_check:
        console.print(
            table_of(
                "Churn-risk bands on the holdout (calibration-period fit)",
                ["band", "customers", "mean expected", "mean actual"],
                [
                    [
                        r["band"],
                        r["customers"],
                        f"{r['mean_expected']:.2f}",
                        f"{r['mean_actual']:.2f}",
                    ]
                    for r in s.churn_check
                ],
            )
        )
    if s.churn_check_note:
        console.print(escape(s.churn_check_note))


@app.command()
def run(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="<YYYY-MM-DD>",
            help="Date the traits describe (YYYY-MM-DD). Default: the traits section's as_of, "
            "else the last order date.",
        ),
    ] = None,
    engine: EngineOpt = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="<stage>",
            help="Run only this stage: ingest, traits, predict or segments (repeat for several).",
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="<stage>",
            help="Run this stage (ingest, traits, predict or segments) and every stage after it.",
        ),
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Run the pipeline's stages in order: ingest, traits, predict, segments.

    Each stage reads the latest successful run of the stages before it and is recorded in
    the run ledger with those parent runs (`personae status` shows the lineage). A stage
    that fails keeps nothing it wrote, and readers keep seeing the previous results.
    """
    from personae.pipeline import STAGES, Skipped

    day = parse_as_of(as_of, as_json)
    results = answer(
        project, as_json, lambda p, bar: p.run(only, start, day, engine, progress=bar), "run"
    )
    from personae.cli.segments import print_segments

    printers: dict[str, Callable[[Any], None]] = {
        "ingest": print_ingest,
        "traits": print_traits,
        "predict": print_predict,
        "segments": print_segments,
    }
    for stage in STAGES:
        result = results.get(stage.name)
        if isinstance(result, Skipped):
            console.print(f"[yellow]{stage.name} skipped:[/] {escape(result.reason)}")
        elif result is not None:
            printers[stage.name](result)


@app.command()
def tables(as_json: JsonOpt = False) -> None:
    """List the canonical tables and their columns."""
    data = {
        t.name: [
            {
                "column": c.name,
                "type": c.sql_type,
                "required": c.required,
                "description": c.description,
            }
            for c in t.columns
        ]
        for t in TABLES.values()
    }
    if as_json:
        print_json({"tables": data, "reject_reasons": REJECT_REASONS})
        return
    for name, cols in data.items():
        console.print(
            table_of(
                name,
                ["column", "type", "required", "description"],
                [
                    [c["column"], c["type"], "yes" if c["required"] else "", c["description"]]
                    for c in cols
                ],
            )
        )
    console.print(
        table_of(
            "Reject reason codes (rejects_<table>.reason)",
            ["reason", "meaning"],
            [[k, v] for k, v in REJECT_REASONS.items()],
        )
    )


__all__ = ["err_console"]
