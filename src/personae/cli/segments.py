"""`personae segments ...`: build segmentations and read them back (list, show, members,
diff). Each command calls one function of `personae.api`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from personae.cli import EngineOpt, JsonOpt, ProjectOpt, answer, app, console, table_of
from personae.segments.build import SegmentsSummary

segments_app = typer.Typer(
    help="Segmentations: build them (`segments run`), list them with sizes and quality, show "
    "one, list a segment's members as of a run, and see who moved between two runs.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(segments_app, name="segments")

RunOpt = Annotated[
    str | None,
    typer.Option("--run", help="A segments run id, or a date: the latest run as of that date."),
]


def _safe(rows: list[list[Any]]) -> list[list[Any]]:
    """Cells from the data (segment names, values) printed as they are, not as markup."""
    return [[escape(v) if isinstance(v, str) else v for v in row] for row in rows]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@segments_app.callback()
def overview(
    ctx: typer.Context,
    run: RunOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """List the segmentations of the latest segments run with sizes and quality.

    Columns: segments, customers segmented, separation (mean silhouette on a sample) and
    stability (bootstrap adjusted Rand index, clusterings only); warnings name tiny, empty
    and unstable segments.
    """
    if ctx.invoked_subcommand is not None:
        return
    data = answer(project, as_json, lambda p: p.segments(run))
    as_of = data["segmentations"][0]["as_of"] if data["segmentations"] else "-"
    _print_segmentations(
        f"Segmentations of run {data['run_id']} (as of {as_of})", data["segmentations"]
    )
    console.print("`personae segments show NAME` for a segmentation's segments.")


@segments_app.command("run")
def run_cmd(
    engine: EngineOpt = None, project: ProjectOpt = Path("."), as_json: JsonOpt = False
) -> None:
    """Build every segmentation over the latest traits (and their predictions).

    Ready-made segmentations are built when the data has their fields ([segments]
    ready_made); yours come from [segmentations.NAME]. Memberships of every run are kept.
    """
    print_segments(answer(project, as_json, lambda p, bar: p.segment(engine, bar), "segments"))


def _print_segmentations(title: str, items: list[dict[str, Any]]) -> None:
    """The table of segmentations (the listing's and a run's), then their warnings."""
    columns = ["segmentation", "model", "method", "segments", "customers"]
    columns += ["silhouette", "stability", "warnings"]
    rows = [
        [
            s["segmentation"],
            s["model"],
            s["method"],
            s["segment_count"],
            s["customers"],
            _num(s["silhouette"]),
            _num(s["stability"]),
            len(s["warnings"]),
        ]
        for s in items
    ]
    console.print(table_of(title, columns, _safe(rows)))
    for s in items:
        for w in s["warnings"]:
            console.print(f"[yellow]{escape(s['segmentation'])}:[/] {escape(w)}")


def print_segments(s: SegmentsSummary) -> None:
    items = [
        {
            "segmentation": r.name,
            "model": r.model,
            "method": r.method,
            "segment_count": sum(1 for n in r.segments.values() if n),
            "customers": r.customers,
            "silhouette": r.silhouette,
            "stability": r.stability,
            "warnings": r.warnings,
        }
        for r in s.segmentations
    ]
    _print_segmentations(f"Segmentations as of {s.as_of} ({s.customers:,} customers)", items)
    for name, why in s.skipped.items():
        console.print(f"  not built: {escape(name)} ({escape(why)})")
    console.print(f"Segments run {s.run_id} in {s.seconds:.1f} s. `personae segments` lists them.")


@segments_app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(help="Segmentation name (see `personae segments`).")],
    run: RunOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show a segmentation's segments: size, shares of customers, revenue and CLV,
    separation, stability, warnings and the traits that set each apart."""
    data = answer(project, as_json, lambda p: p.segmentation(name, run))
    console.print(
        f"[bold]{escape(name)}[/] ({data['model']}, {data['method']}, {data['kind']}; run "
        f"{data['run_id']} as of {data['as_of']}): {escape(data['description'] or '')}"
    )
    console.print(
        table_of(
            "Segments",
            [
                "segment",
                "n",
                "customers",
                "revenue",
                "CLV",
                "silhouette",
                "stability",
                "proposed name",
            ],
            _safe(
                [
                    [
                        s["segment"],
                        s["size"],
                        _pct(s["share_customers"]),
                        _pct(s["share_revenue"]),
                        _pct(s["share_clv"]),
                        _num(s["silhouette"]),
                        _num(s["stability"]),
                        s["proposed_name"] or "",
                    ]
                    for s in data["segments"]
                ]
            ),
        )
    )
    for s in data["segments"]:
        traits = ", ".join(_trait(t) for t in s["distinguishing"][:4])
        line = f"  {escape(s['segment'])}: {escape(str(s['rule']))}"
        console.print(line + (f"; sets apart: {escape(traits)}" if traits else ""))
        if s["warning"]:
            console.print(f"    [yellow]warning:[/] {escape(s['warning'])}")
    if data["diagnostics"]:
        console.print(
            table_of(
                "Number of clusters",
                ["k", "silhouette", "bic", "chosen"],
                [
                    [d["k"], _num(d["silhouette"]), _num(d["bic"]), "yes" if d["chosen"] else ""]
                    for d in data["diagnostics"]
                ],
            )
        )


def _mean(value: float | None) -> str:
    """A mean with the digits that tell two of them apart: shares below 1 keep three
    significant digits (0.0213 vs 0.0181, not 0.02 vs 0.02), money a thousands separator."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def _trait(t: dict[str, Any]) -> str:
    if t["value"] is not None:
        return f"{t['trait']} = {t['value']} (lift {_num(t['lift'])})"
    return f"{t['trait']} {_mean(t['segment_mean'])} vs {_mean(t['overall_mean'])}"


@segments_app.command("members")
def members_cmd(
    segment: Annotated[str, typer.Argument(help="Segment name, e.g. 'At Risk'.")],
    segmentation: Annotated[
        str | None,
        typer.Option("--segmentation", "-s", help="Its segmentation, when the name is in several."),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="<date|run>",
            help="A date (the latest segments run as of then) or a segments run id.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=0, metavar="<int>", help="Customer ids to print (0: all).")
    ] = 100,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """List the customers in a segment, now or as of a past run."""
    data = answer(
        project, as_json, lambda p: p.members(segment, segmentation, as_of, limit or None)
    )
    console.print(
        f"{data['count']:,} customers in {escape(data['segmentation'])} / "
        f"{escape(data['segment'])} (run {data['run_id']}, as of {data['as_of']})"
    )
    for cid in data["customer_ids"]:
        console.print(escape(str(cid)))
    if len(data["customer_ids"]) < data["count"]:
        console.print(f"... {data['count'] - len(data['customer_ids']):,} more (--limit 0: all)")


@segments_app.command("diff")
def diff_cmd(
    run_a: Annotated[str, typer.Argument(help="The earlier segments run id or as-of date.")],
    run_b: Annotated[str, typer.Argument(help="The later segments run id or as-of date.")],
    segmentation: Annotated[
        str, typer.Option("--segmentation", "-s", help="Segmentation to compare.")
    ] = "rfm",
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Print the migration matrix of a segmentation between two runs: who moved from which
    segment to which."""
    data = answer(project, as_json, lambda p: p.segments_diff(run_a, run_b, segmentation))
    froms = sorted({c["from"] for c in data["cells"]})
    tos = sorted({c["to"] for c in data["cells"]})
    counts = {(c["from"], c["to"]): c["customers"] for c in data["cells"]}
    console.print(
        table_of(
            f"{segmentation}: {data['as_of_a']} (rows) -> {data['as_of_b']} (columns)",
            ["from \\ to", *(escape(t) for t in tos)],
            _safe([[f, *[counts.get((f, t), 0) for t in tos]] for f in froms]),
        )
    )
    share = data["moved"] / data["customers"] if data["customers"] else 0.0
    console.print(f"{data['moved']:,} of {data['customers']:,} customers moved ({share:.1%}).")
