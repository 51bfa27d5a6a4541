"""Errors a user can act on (issue 12, section 6): a full disk, a damaged store, exports to
places personae cannot write, interrupted runs, --json errors, help text that keeps its
words, warnings printed once. Every case runs the real command line on files built here and
checks that no traceback is printed."""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from personae.store import Store

BIN = [sys.executable, "-m", "personae.cli"]
ENV = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}


def personae(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BIN, *args], capture_output=True, text=True, cwd=cwd, env=ENV, timeout=300
    )


def no_traceback(res: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in res.stderr + res.stdout, res.stderr


def json_error(res: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The one JSON object a failing command prints on stdout with --json."""
    assert res.returncode == 1, res.stderr
    no_traceback(res)
    error = json.loads(res.stdout)["error"]
    assert set(error) == {"code", "message", "hint"} and error["hint"]
    return dict(error)


def small_project(folder: Path, store: str | None = None) -> Path:
    """Two customers and three orders, ingested: a store with a published snapshot."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "customers.csv").write_text("customer_id,first_name\nc1,Ann\nc2,Bob\n")
    (folder / "orders.csv").write_text(
        "order_id,customer_id,ordered_at,amount,currency\n"
        "o1,c1,2024-01-05,10,GBP\no2,c2,2024-01-06,12.5,GBP\no3,c2,2024-02-01,7,USD\n"
    )
    store_line = f'[store]\npath = "{store}"\n' if store else ""
    (folder / "personae.toml").write_text(
        store_line
        + '[sources.customers]\ntable = "customers"\npath = "customers.csv"\n'
        + '[sources.customers.columns]\ncustomer_id = "customer_id"\nfirst_name = "first_name"\n'
        + '[sources.orders]\ntable = "orders"\npath = "orders.csv"\n'
        + "[sources.orders.columns]\n"
        + 'order_id = "order_id"\ncustomer_id = "customer_id"\nordered_at = "ordered_at"\n'
        + 'amount = "amount"\ncurrency = "currency"\n'
    )
    res = personae("ingest", "-p", str(folder), "--json")
    assert res.returncode == 0, res.stderr
    return folder


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 6 MB tmpfs: room for a small store and its snapshot, not for much more."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root to mount")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _big_csv(path: Path, rows: int) -> None:
    rng = random.Random(1)
    with open(path, "w") as f:
        f.write("customer_id,first_name\n")
        for i in range(rows):
            f.write(f"b{i},{''.join(rng.choices(string.ascii_letters, k=40))}\n")


def test_full_disk_during_ingest_keeps_the_store(tmp_path: Path, small_disk: Path) -> None:
    project = small_project(tmp_path / "shop", store=str(small_disk / "personae.duckdb"))
    _big_csv(project / "more.csv", 200_000)
    with open(project / "personae.toml", "a") as f:
        f.write(
            '[sources.more]\ntable = "customers"\npath = "more.csv"\n'
            '[sources.more.columns]\ncustomer_id = "customer_id"\nfirst_name = "first_name"\n'
        )
    res = personae("ingest", "-p", str(project))
    assert res.returncode == 1
    no_traceback(res)
    assert "The disk is full" in res.stderr and str(small_disk) in res.stderr
    assert "left on it" in res.stderr and "the store is as it was" in res.stderr
    error = json_error(personae("ingest", "-p", str(project), "--json"))
    assert error["code"] == "store_error" and "disk is full" in error["message"]
    # the store is intact: the first ingest's rows, readable
    with Store(small_disk / "personae.duckdb", read_only=True) as store:
        assert store.count("customers") == 2
    status = personae("status", "-p", str(project), "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["tables"]["customers"] == 2


def test_full_disk_during_export(tmp_path: Path, small_disk: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    _big_csv(project / "customers.csv", 200_000)
    (project / "personae.toml").write_text(
        '[sources.customers]\ntable = "customers"\npath = "customers.csv"\n'
        '[sources.customers.columns]\ncustomer_id = "customer_id"\nfirst_name = "first_name"\n'
    )
    assert personae("ingest", "-p", str(project), "--json").returncode == 0
    out = small_disk / "customers.csv"
    res = personae("export", "customers", "-p", str(project), "--out", str(out))
    assert res.returncode == 1
    no_traceback(res)
    assert f"The disk holding {out} is full" in res.stderr
    assert "needed more than" in res.stderr and "free" in res.stderr
    assert list(small_disk.iterdir()) == []  # no partial file left behind
    error = json_error(
        personae("export", "customers", "-p", str(project), "--out", str(out), "--json")
    )
    assert error["code"] == "output_error"


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_store_is_named_and_the_snapshot_still_exports(tmp_path: Path, damage: str) -> None:
    project = small_project(tmp_path / "shop")
    store = project / ".personae" / "personae.duckdb"
    if damage == "truncate":
        os.truncate(store, store.stat().st_size // 3)
    else:
        store.write_bytes(b"not a database" * 1000)
    res = personae("ingest", "-p", str(project))
    assert res.returncode == 1
    no_traceback(res)
    assert f"The store {store} is damaged or truncated" in res.stderr
    assert "`personae export` and `personae status` still read the published snapshot" in (
        res.stderr
    )
    error = json_error(personae("ingest", "-p", str(project), "--json"))
    assert error["code"] == "store_error" and "published snapshot" in error["hint"]
    out = tmp_path / "customers.csv"
    res = personae("export", "customers", "-p", str(project), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_text().count("\n") == 3


def test_damaged_snapshot_names_the_copy_that_opens(tmp_path: Path) -> None:
    project = small_project(tmp_path / "shop")
    published = project / ".personae" / "published"
    current = published / (published / "CURRENT").read_text().strip()
    os.truncate(current, 8192)
    res = personae("export", "customers", "-p", str(project), "--out", str(tmp_path / "c.csv"))
    assert res.returncode == 1
    no_traceback(res)
    assert f"The store {current} is damaged or truncated" in res.stderr
    assert "personae.duckdb opens: copy it over" in res.stderr


def test_export_to_places_it_cannot_write(tmp_path: Path) -> None:
    project = small_project(tmp_path / "shop")
    folder = tmp_path / "folder"
    folder.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = {
        str(folder): "is a folder; give a file name",
        str(a_file / "x.csv"): f"{a_file} is a file, not a folder",
        str(
            tmp_path / "out.xlsx"
        ): "personae writes CSV (.csv) and Parquet (.parquet), not '.xlsx'",
        str(tmp_path / "out.json"): "not '.json'",
    }
    for out, message in cases.items():
        res = personae("export", "customers", "-p", str(project), "--out", out)
        assert res.returncode == 1, out
        no_traceback(res)
        assert message in res.stderr, res.stderr
        error = json_error(
            personae("export", "customers", "-p", str(project), "--out", out, "--json")
        )
        assert error["code"] == "output_error" and message in error["message"]
    assert not (tmp_path / "out.xlsx").exists() and not (tmp_path / "out.json").exists()
    res = personae(
        "export",
        "customers",
        "-p",
        str(project),
        "--out",
        str(tmp_path / "c.parquet"),
        "--format",
        "csv",
    )
    assert res.returncode == 1 and "the name says parquet but --format says csv" in res.stderr
    res = personae("export", "customers", "-p", str(project), "--out", str(tmp_path / "plain"))
    assert res.returncode == 0 and (tmp_path / "plain").read_text().startswith("customer_id,")


def test_killed_run_shows_as_interrupted(tmp_path: Path) -> None:
    project = small_project(tmp_path / "shop")
    with Store(project / ".personae" / "personae.duckdb") as store:
        run_id = store.start_run("traits")  # committed as running; the process "dies" here
    status = json.loads(personae("status", "-p", str(project), "--json").stdout)
    (run,) = [r for r in status["runs"] if r["run_id"] == run_id]
    assert run["status"] == "interrupted" and "nothing it wrote was kept" in run["error"]
    text = personae("status", "-p", str(project)).stdout
    assert f"interrupted: {run_id}" in text
    # the next writer records it so in the ledger, and readers see it from the snapshot
    assert personae("ingest", "-p", str(project), "--json").returncode == 0
    with Store(project / ".personae" / "personae.duckdb", read_only=True) as store:
        assert store.run_info(run_id)["status"] == "interrupted"
    status = json.loads(personae("status", "-p", str(project), "--json").stdout)
    assert [r["status"] for r in status["runs"] if r["run_id"] == run_id] == ["interrupted"]


def test_a_running_writer_is_not_called_interrupted(tmp_path: Path) -> None:
    """While a process holds the store, its running run is not interrupted."""
    project = small_project(tmp_path / "shop")
    with Store(project / ".personae" / "personae.duckdb") as store:
        run_id = store.start_run("traits")
        code = (
            "import json, personae; "
            f"print(json.dumps([r['status'] for r in personae.Project.open({str(project)!r})"
            f".status()['runs'] if r['run_id'] == {run_id!r}]))"
        )
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout) == []  # not published yet, and not called interrupted
        store.finish_run(run_id)


def test_json_errors_are_one_object_on_stdout(tmp_path: Path) -> None:
    error = json_error(personae("status", "-p", str(tmp_path), "--json"))
    assert error["code"] == "config_error" and "personae.toml" in error["message"]
    (tmp_path / "personae.toml").write_text('[store]\nmemory_limit = "lots"\n')
    error = json_error(personae("ingest", "-p", str(tmp_path), "--json"))
    assert error["code"] == "config_error" and "memory_limit" in error["message"]
    error = json_error(personae("traits", "--as-of", "yesterday", "-p", str(tmp_path), "--json"))
    assert "--as-of must be a YYYY-MM-DD date" in error["message"]
    project = small_project(tmp_path / "shop")
    error = json_error(
        personae("export", "nope", "-p", str(project), "--out", str(tmp_path / "x.csv"), "--json")
    )
    assert error["code"] == "store_error" and "No table 'nope'" in error["message"]


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("traits", "Default: [traits] as_of"),
        ("predict", "discount rate are in [predict]"),
        ("predict", "(unless [predict]"),
        ("run", "overrides [store] engine"),
        ("export", "--raw"),
    ],
)
def test_help_keeps_section_names(command: str, words: str) -> None:
    res = personae(command, "--help")
    assert res.returncode == 0
    flat = " ".join(line.strip(" │") for line in res.stdout.splitlines())
    assert words in " ".join(flat.split())


def test_warnings_print_once(tmp_path: Path) -> None:
    """A warning the library logs is also in the command's summary: it shows once."""
    project = small_project(tmp_path / "shop")
    res = personae("traits", "-p", str(project))
    assert res.returncode == 0, res.stderr
    both = " ".join((res.stdout + res.stderr).split())
    assert both.count("order lines are not in GBP") == 1, both
    verbose = personae("-v", "traits", "-p", str(project))
    assert "WARNING" in verbose.stderr  # --verbose still shows the log


def test_missing_store_export_says_so(tmp_path: Path) -> None:
    (tmp_path / "personae.toml").write_text("")
    res = personae("export", "customers", "-p", str(tmp_path), "--out", str(tmp_path / "x.csv"))
    assert res.returncode == 1
    no_traceback(res)
    assert "No store at" in res.stderr
    assert not (tmp_path / ".personae").exists()  # a reader creates no store


def test_exporting_an_output_no_run_has_written_says_so(tmp_path: Path) -> None:
    project = small_project(tmp_path / "p")
    out = tmp_path / "traits.csv"
    res = personae("export", "traits", "-p", str(project), "--out", str(out))
    assert res.returncode == 1
    no_traceback(res)
    assert "No run has written traits yet: there is nothing to export." in res.stderr
    assert "Run the traits stage first" in res.stderr
    assert not out.exists()
    # an empty canonical table is still a file with its header (no rejects: 0 rows)
    res = personae("export", "rejects_orders", "-p", str(project), "--out", str(out))
    assert res.returncode == 0 and out.read_text().startswith("source_id,source_row,")


def test_running_out_of_memory_names_the_setting_and_keeps_nothing(tmp_path: Path) -> None:
    """A memory_limit too small for the work: a message that names [store] memory_limit and
    what to do, no traceback, the run marked failed and none of its rows kept."""
    from personae.synth import generate

    root = tmp_path / "small"
    # 64MB is the least memory_limit allowed; traits computed family by family fit 3,000
    # customers in it, so the data is large enough to fail there (10,000 did in a trial)
    generate(root, customers=25_000, seed=2)
    assert personae("ingest", "-p", str(root)).returncode == 0
    toml = root / "personae.toml"
    toml.write_text(toml.read_text().replace("[store]\n", '[store]\nmemory_limit = "64MB"\n', 1))
    res = personae("traits", "-p", str(root))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr + res.stdout
    assert (
        'The traits stage ran out of memory: DuckDB needed more than [store] memory_limit = "64MB"'
        in res.stderr
    )
    assert "Raise memory_limit in the [store] section" in res.stderr
    with Store(root / ".personae" / "personae.duckdb", read_only=True) as store:
        runs = store.con.execute("SELECT status FROM runs WHERE stage = 'traits'").fetchall()
        kept = store.con.execute("SELECT count(*) FROM traits").fetchall()[0][0]
    assert runs == [("failed",)] and kept == 0
