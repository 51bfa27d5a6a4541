"""The command line as a user runs it: a real process, real files, exit codes and --json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import personae


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    res = personae("synth", str(out), "--customers", "600", "--seed", "5", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["rows"]["customers"] == 600
    return out


def test_run_status_export(demo: Path, tmp_path: Path) -> None:
    res = personae("run", "--project", str(demo), "--json")
    assert res.returncode == 0, res.stderr
    both = json.loads(res.stdout)
    summary = both["ingest"]
    assert summary["tables"]["customers"] == 600
    assert both["traits"]["customers"] == 600 and both["traits"]["engine"] == "duckdb"
    assert {s["status"] for s in summary["sources"]} == {"loaded"}

    again = json.loads(personae("ingest", "--project", str(demo), "--json").stdout)
    assert {s["status"] for s in again["sources"]} == {"unchanged"}
    assert again["tables"] == summary["tables"]

    status = json.loads(personae("status", "--project", str(demo), "--json").stdout)
    assert status["tables"] == summary["tables"]
    assert len(status["sources"]) == 6
    assert [r["stage"] for r in status["runs"]] == [
        "ingest",
        "segments",
        "predict",
        "traits",
        "ingest",
    ]
    assert both["segments"]["customers"] == 600
    assert both["predict"]["customers"] > 400 and both["predict"]["model"] in (
        "bgnbd",
        "mbgnbd",
        "pnbd",
    )

    out = tmp_path / "c.parquet"
    res = personae("export", "customers", "--project", str(demo), "--out", str(out), "--json")
    assert json.loads(res.stdout) == {
        "table": "customers",
        "out": str(out),
        "format": "parquet",
        "rows": 600,
    }
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 600
    csv_out = tmp_path / "o.csv"
    res = personae("export", "orders", "--project", str(demo), "--out", str(csv_out))
    assert res.returncode == 0 and "rows of orders" in res.stdout
    lines = csv_out.read_text().count("\n")
    assert lines == summary["tables"]["orders"] + 1

    human = personae("status", "--project", str(demo))
    assert human.returncode == 0 and "customers" in human.stdout
    res = personae("traits", "--project", str(demo), "--as-of", "2024-06-30")
    assert res.returncode == 0, res.stderr
    # customers the data first show after the as-of date did not exist yet: left out
    shown = re.search(r"Traits of ([\d,]+) customers", res.stdout)
    later = re.search(r"([\d,]+) customers first appear after the as-of date", res.stdout)
    assert shown and later and "RFM segments" in res.stdout
    assert int(shown[1].replace(",", "")) + int(later[1].replace(",", "")) == 600
    res = personae("traits", "--project", str(demo), "--as-of", "June")
    assert res.returncode == 1 and "YYYY-MM-DD" in res.stderr


def test_init_then_ingest_human_output(tmp_path: Path) -> None:
    src = tmp_path / "people.csv"
    src.write_text("Customer ID;Gender;Sign-up Date\n1;F;03/25/2021\n2;m;04/01/2021\n;F;x\n")
    res = personae("init", str(src), "--project", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "customers" in res.stdout and "Customer ID" in res.stdout
    toml = (tmp_path / "personae.toml").read_text()
    assert '"Customer ID" = "customer_id"' in toml and '"%m/%d/%Y"' in toml
    res = personae("ingest", "--project", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "missing_id" in res.stdout


def test_errors_exit_1_with_a_clear_message(tmp_path: Path) -> None:
    res = personae("init", str(tmp_path / "nope.csv"), "--project", str(tmp_path))
    assert res.returncode == 1
    assert "nope.csv not found" in res.stderr
    res = personae("status", "--project", str(tmp_path))
    assert res.returncode == 1 and "personae init" in res.stderr
    (tmp_path / "personae.toml").write_text('[sources.o]\ntable = "orders"\npath = "o.csv"\n')
    (tmp_path / "o.csv").write_text("customer_id,amount\n1,3\n")
    res = personae("ingest", "--project", str(tmp_path))
    assert res.returncode == 1
    assert "required column 'ordered_at'" in res.stderr and "[sources.o.columns]" in res.stderr
    res = personae("export", "nope", "--project", str(tmp_path), "--out", "x.csv")
    assert res.returncode == 1


def test_help_lists_every_command() -> None:
    res = personae("--help")
    for cmd in ("init", "ingest", "synth", "status", "export", "run", "tables"):
        assert cmd in res.stdout


def test_version() -> None:
    from personae import __version__

    res = personae("--version")
    assert (res.returncode, res.stdout) == (0, f"personae {__version__}\n")
