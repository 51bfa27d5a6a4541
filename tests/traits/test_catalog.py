"""The trait catalog is complete: every column the traits stage writes is declared, defined
and documented."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from personae import Project
from personae.synth import generate
from personae.traits.catalog import TRAITS

ROOT = Path(__file__).resolve().parents[2]


def test_every_trait_has_a_definition_and_the_page_is_current() -> None:
    for t in TRAITS:
        assert t.definition and t.unit and t.family, t.name
    assert len({t.name for t in TRAITS}) == len(TRAITS)
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_traits_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("small")
    generate(root, customers=300, seed=2)
    project = Project.open(root)
    project.ingest()
    return project


def test_written_columns_are_exactly_the_catalog(small: Project) -> None:
    summary = small.traits()
    with small.store(read_only=True) as store:
        cols = [r[0] for r in store.con.execute("DESCRIBE traits").fetchall()]
        last_order = store.con.execute("SELECT max(ordered_at)::DATE::VARCHAR FROM orders")
        assert summary.as_of == last_order.fetchall()[0][0]  # default: the last order date
    assert cols == ["customer_id", *(t.name for t in TRAITS), "run_id", "as_of"]


def test_export_gives_the_latest_run_only(small: Project, tmp_path: Path) -> None:
    small.traits(date(2023, 12, 31))
    last = small.traits(date(2024, 6, 30))
    out = tmp_path / "t.csv"
    n = small.export("traits", out)
    assert n == last.customers
    import csv

    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["as_of"] for r in rows} == {"2024-06-30"}
    assert {r["run_id"] for r in rows} == {last.run_id}
