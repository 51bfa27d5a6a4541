"""Re-ingest does what the user meant: an edited personae.toml takes effect, a changed file
replaces its rows instead of doubling them, update sources fill in, `--force` re-reads, and
a run that read the replaced rows keeps reading them."""

from __future__ import annotations

import json
from pathlib import Path

from personae import Project

from ..conftest import personae, write_toml

ORDERS = "when,who,total,note\n"


def _orders(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    path.write_text(ORDERS + "".join(f"{d},{c},{t},x\n" for d, c, t in rows))
    return path


def _config(folder: Path, file: Path, extra: str = "") -> Project:
    write_toml(
        folder,
        f"""
[sources.shop]
table = "orders"
path = "{file}"
date_formats = {{ when = "%Y-%m-%d" }}
{extra}
[sources.shop.columns]
when = "ordered_at"
who = "customer_id"
total = "amount"
""",
    )
    return Project.open(folder)


ROWS = [(f"2024-0{1 + i % 9}-{10 + i % 18}", f"c{i % 40}", 10.0 + i % 13) for i in range(300)]


def test_editing_the_mapping_reads_the_source_again_and_replaces_its_rows(
    tmp_path: Path,
) -> None:
    file = _orders(tmp_path / "orders.csv", ROWS)
    first = _config(tmp_path, file).ingest()
    assert (first.sources[0].status, first.tables["orders"]) == ("loaded", 300)
    assert _config(tmp_path, file).ingest().sources[0].status == "unchanged"

    # the user maps `note` too: same file, new settings
    project = _config(tmp_path, file, 'constants = { channel = "web" }')
    summary = project.ingest()
    s = summary.sources[0]
    assert s.status == "refreshed"
    assert s.replaced == [first.sources[0].source_id]
    assert summary.tables["orders"] == 300  # replaced, never doubled
    with project.store(read_only=True) as store:
        channels = store.query("SELECT channel, count(*) AS n FROM orders GROUP BY 1")
        assert channels == [{"channel": "web", "n": 300}]
        live = store.query("SELECT count(*) AS n FROM sources WHERE retired_run IS NULL")
        assert live[0]["n"] == 1


def test_a_changed_file_without_order_ids_is_refreshed_not_appended(tmp_path: Path) -> None:
    file = _orders(tmp_path / "orders.csv", ROWS)
    project = _config(tmp_path, file)
    project.ingest()
    revenue = project.status()["tables"]["orders"]
    # the next export of the same shop: 5 lines gone, 20 new, the rest identical
    _orders(file, ROWS[5:] + [("2024-10-01", f"c{i}", 99.0) for i in range(20)])
    summary = project.ingest()
    s = summary.sources[0]
    assert (s.status, s.added, s.changed, s.removed) == ("refreshed", 20, 0, 5)
    assert summary.tables["orders"] == revenue - 5 + 20 == 315
    with project.store(read_only=True) as store:
        total = store.query("SELECT sum(amount) AS t FROM orders")[0]["t"]
    assert total == sum(t for _, _, t in ROWS[5:]) + 20 * 99.0


def test_a_keyed_refresh_reports_changed_rows(tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("id,city\n1,Oslo\n2,Rome\n3,Lima\n")
    write_toml(
        tmp_path,
        f'[sources.people]\ntable = "customers"\npath = "{people}"\n'
        'columns = { id = "customer_id", city = "city" }\n',
    )
    project = Project.open(tmp_path)
    project.ingest()
    people.write_text("id,city\n1,Oslo\n2,Milan\n4,Pune\n")
    s = project.ingest().sources[0]
    assert (s.added, s.changed, s.removed) == (1, 1, 1)
    with project.store(read_only=True) as store:
        cities = dict(store.con.execute("SELECT customer_id, city FROM customers").fetchall())
    assert cities == {"1": "Oslo", "2": "Milan", "4": "Pune"}


def test_update_fills_in_empty_values_unless_told_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "crm.csv").write_text("id,city,age\n1,Oslo,\n2,,40\n3,Lima,33\n")
    (tmp_path / "survey.csv").write_text("id,city,age\n1,Bergen,51\n2,Rome,41\n5,Kyiv,28\n")
    base = """
[sources.crm]
table = "customers"
path = "crm.csv"
columns = {{ id = "customer_id", city = "city", age = "age" }}

[sources.survey]
table = "customers"
path = "survey.csv"
mode = "update"
{overwrite}
columns = {{ id = "customer_id", city = "city", age = "age" }}
"""
    write_toml(tmp_path, base.format(overwrite=""))
    project = Project.open(tmp_path)
    survey = project.ingest().sources[1]
    # rows 1 and 2 exist: 1 gets its age, 2 its city; 5 is new; nothing is overwritten
    assert (survey.updated, survey.values_changed, survey.rows_loaded) == (2, 2, 3)
    with project.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT customer_id, city, age FROM customers ORDER BY 1"
        ).fetchall()
    assert rows == [("1", "Oslo", 51), ("2", "Rome", 40), ("3", "Lima", 33), ("5", "Kyiv", 28)]

    write_toml(tmp_path, base.format(overwrite="overwrite = true"))
    project = Project.open(tmp_path)
    survey = project.ingest(["crm", "survey"], force=True).sources[1]
    assert (survey.updated, survey.values_changed) == (2, 4)
    with project.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT customer_id, city, age FROM customers ORDER BY 1"
        ).fetchall()
    assert rows == [("1", "Bergen", 51), ("2", "Rome", 41), ("3", "Lima", 33), ("5", "Kyiv", 28)]


def test_force_reads_one_source_again_from_the_cli(tmp_path: Path) -> None:
    file = _orders(tmp_path / "orders.csv", ROWS)
    (tmp_path / "people.csv").write_text("id,city\nc1,Oslo\n")
    project = _config(tmp_path, file)
    write_toml(
        tmp_path,
        (tmp_path / "personae.toml").read_text()
        + '\n[sources.people]\ntable = "customers"\npath = "people.csv"\n'
        'columns = { id = "customer_id", city = "city" }\n',
    )
    Project.open(tmp_path).ingest()
    res = personae("ingest", "--source", "shop", "--force", "-p", str(tmp_path), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert [(s["name"], s["status"]) for s in out["sources"]] == [("shop", "refreshed")]
    assert (out["sources"][0]["added"], out["sources"][0]["removed"]) == (0, 0)
    assert out["tables"]["orders"] == 300 and out["tables"]["customers"] == 1
    assert project.status()["tables"]["orders"] == 300


def test_a_glob_source_appends_each_new_file(tmp_path: Path) -> None:
    _orders(tmp_path / "orders-1.csv", ROWS[:100])
    project = _config(tmp_path, tmp_path / "orders-*.csv")
    assert project.ingest().tables["orders"] == 100
    _orders(tmp_path / "orders-2.csv", ROWS[100:])
    summary = project.ingest()
    assert [s.status for s in summary.sources] == ["loaded"]
    assert summary.tables["orders"] == 300
    assert project.ingest().sources[0].status == "unchanged"


def test_a_run_that_read_replaced_rows_keeps_reading_them_until_no_run_needs_them(
    tmp_path: Path,
) -> None:
    rows = [(f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}", f"c{i % 60}", 20.0) for i in range(900)]
    file = _orders(tmp_path / "orders.csv", rows)
    project = _config(tmp_path, file, "")
    write_toml(
        tmp_path,
        (tmp_path / "personae.toml").read_text()
        + "\n[predict]\nmin_repeat_buyers = 1\nmin_history_days = 30\n"
        "calibration_end = 2023-09-30\n",
    )
    project = Project.open(tmp_path)
    project.run(only=["ingest", "traits"])
    baseline = project.predict()
    _orders(file, rows[:450])  # half the orders are gone in the new export
    project.ingest()
    with project.store(read_only=True) as store:
        kept = store.count("retired_orders")
    assert kept == 900  # the latest traits run still reads them
    again = project.predict()
    assert again.customers == baseline.customers
    assert [again.churn_bands, again.total_clv] == [baseline.churn_bands, baseline.total_clv]
    project.run(start="traits")  # now every latest run reads the new export
    with project.store(read_only=True) as store:
        assert store.count("retired_orders") == 0
        assert store.count("orders") == 450


def _keyed_orders(path: Path, rows: list[tuple[str, str, str, float]]) -> Path:
    path.write_text("order_id,customer_id,ordered_at,amount\n")
    with path.open("a") as f:
        f.writelines(f"{o},{c},{d},{a}\n" for o, c, d, a in rows)
    return path


def test_a_refresh_of_keyed_orders_counts_each_changed_line_once(tmp_path: Path) -> None:
    rows = [(str(i), f"c{i % 50}", f"2024-01-{1 + i % 28:02d}", 10.0) for i in range(2000)]
    file = _keyed_orders(tmp_path / "orders.csv", rows)
    write_toml(tmp_path, f'[sources.shop]\ntable = "orders"\npath = "{file}"\n')
    project = Project.open(tmp_path)
    project.ingest()
    changed = rows[10:]
    changed[0] = (changed[0][0], changed[0][1], changed[0][2], 99.0)
    changed[1] = (changed[1][0], changed[1][1], changed[1][2], 98.0)
    extra = [(str(5000 + i), "c1", "2024-02-01", 5.0) for i in range(5)]
    _keyed_orders(file, changed + extra)
    s = project.ingest().sources[0]
    assert (s.added, s.changed, s.removed) == (5, 2, 10)
    s = project.ingest(force=True).sources[0]
    assert (s.status, s.added, s.changed, s.removed) == ("refreshed", 0, 0, 0)


def test_id_pattern_checks_the_tables_own_ids_only(tmp_path: Path) -> None:
    rows = [(str(i), f"c{i % 40}", "2024-03-01", 1.25) for i in range(400)]
    file = _keyed_orders(tmp_path / "q.csv", [*rows, ("99x", "c1", "2024-03-02", 2.0)])
    _, (proposal,) = Project.init([file], tmp_path)
    assert proposal.source.id_pattern == r"^\d+$"
    s = Project.open(tmp_path).ingest().sources[0]
    assert (s.rows_read, s.rows_loaded, s.rejected) == (401, 400, {"bad_id": 1})


def test_an_update_source_fills_in_orders_and_init_proposes_it_for_customers_only(
    tmp_path: Path,
) -> None:
    shop = _keyed_orders(tmp_path / "shop1.csv", [("1", "a", "2024-01-01", 5.0)])
    shop.write_text(shop.read_text() + "2,b,2024-01-02,\n")
    fix = _keyed_orders(tmp_path / "fix.csv", [("2", "b", "2024-01-02", 20.0)])
    _, proposals = Project.init([shop, fix], tmp_path)
    assert [p.source.mode for p in proposals] == [None, None]  # more orders, not an update
    text = (tmp_path / "personae.toml").read_text()
    write_toml(tmp_path, text.replace("[sources.fix]\n", '[sources.fix]\nmode = "update"\n'))
    summary = Project.open(tmp_path).ingest()
    fixed = summary.sources[1]
    assert (fixed.rejected, fixed.updated, fixed.values_changed) == ({}, 1, 1)
    with Project.open(tmp_path).store(read_only=True) as store:
        amounts = dict(store.con.execute("SELECT order_id, amount FROM orders").fetchall())
    assert amounts == {"1": 5.0, "2": 20.0}


def test_update_sources_are_applied_again_when_the_rows_they_filled_are_refreshed(
    tmp_path: Path,
) -> None:
    (tmp_path / "crm.csv").write_text("id,city,email\nC1,Oslo,a@x.com\nC2,Rome,\n")
    (tmp_path / "extra.csv").write_text("id,email\nC2,b@x.com\n")
    base = """
[sources.crm]
table = "customers"
path = "crm.csv"
columns = {{ id = "customer_id", city = "city", email = "email" }}

[sources.extra]
table = "customers"
path = "extra.csv"
mode = "update"
columns = {{ id = "customer_id", email = "email" }}
"""
    write_toml(tmp_path, base.format())
    project = Project.open(tmp_path)
    project.ingest()

    def emails() -> dict[str, str | None]:
        with project.store(read_only=True) as store:
            return dict(store.con.execute("SELECT customer_id, email FROM customers").fetchall())

    assert emails() == {"C1": "a@x.com", "C2": "b@x.com"}
    summary = project.ingest(["crm"], force=True)
    assert [(s.name, s.status) for s in summary.sources] == [
        ("crm", "refreshed"),
        ("extra", "refreshed"),
    ]
    assert emails() == {"C1": "a@x.com", "C2": "b@x.com"}
    # the update file changes: its earlier version's new rows go, its new rows come
    (tmp_path / "extra.csv").write_text("id,email\nC2,b@x.com\nC3,c@x.com\n")
    project.ingest()
    (tmp_path / "extra.csv").write_text("id,email\nC2,b@x.com\nC4,d@x.com\n")
    s = project.ingest().sources[-1]
    assert s.status == "refreshed"
    assert set(emails()) == {"C1", "C2", "C4"}
    assert len(project.status()["sources"]) == 2


def test_a_project_named_by_a_relative_folder_finds_its_files(tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    shop.mkdir()
    _orders(shop / "orders.csv", ROWS)
    _config(shop, Path("orders.csv"))  # a path relative to the folder of personae.toml
    res = personae("ingest", "--project", "shop", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["tables"]["orders"] == 300
