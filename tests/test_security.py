"""What a personae.toml cannot do (docs/security.md): a database source's query or table name
cannot read other files, write files, attach another store, install extensions or change
settings; settings are values, never SQL text; CSV exports cannot carry spreadsheet formulas.
Each attack builds its victim in tmp_path and checks that nothing happened."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from personae import Project
from personae.config import load_config
from personae.errors import ConfigError, SourceError
from personae.ingest.readers import read_only_query
from tests.ingest.test_db_sources import postgres_url  # noqa: F401  (the fixture)

CUSTOMERS = [("c1", "Ann"), ("c2", "Bob")]


def _duckdb_source(tmp_path: Path) -> Path:
    db = tmp_path / "crm.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE contacts (customer_id VARCHAR, first_name VARCHAR)")
    con.executemany("INSERT INTO contacts VALUES (?, ?)", CUSTOMERS)
    con.close()
    return db


def _victim_store(tmp_path: Path) -> Path:
    """Another project's store, with customers an attack would like to delete."""
    db = tmp_path / "victim" / "personae.duckdb"
    db.parent.mkdir()
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE customers (customer_id VARCHAR)")
    con.execute("INSERT INTO customers VALUES ('v1'), ('v2')")
    con.close()
    return db


def _project(tmp_path: Path, source: str) -> Project:
    """A new project folder with one customers source."""
    folder = tmp_path / f"proj{len(list(tmp_path.glob('proj*')))}"
    folder.mkdir()
    (folder / "personae.toml").write_text(f'[sources.crm]\ntable = "customers"\n{source}\n')
    return Project.open(folder)


def _toml_str(text: str) -> str:
    return "'''" + text + "'''"


def test_a_duckdb_source_reads_its_table(tmp_path: Path) -> None:
    db = _duckdb_source(tmp_path)
    project = _project(tmp_path, f'url = "duckdb:///{db}"\nsource_table = "contacts"')
    assert project.ingest().sources[0].rows_loaded == 2
    project = _project(
        tmp_path,
        f'url = "duckdb:///{db}"\nquery = '
        + _toml_str("WITH c AS (SELECT * FROM contacts) SELECT * FROM c WHERE first_name = 'Ann';"),
    )
    assert project.ingest().sources[0].rows_loaded == 1


def test_a_query_cannot_read_other_files(tmp_path: Path) -> None:
    db = _duckdb_source(tmp_path)
    secret = tmp_path / "secret.csv"
    secret.write_text("customer_id,first_name\nsecret-id,Eve\n")
    for reader in (f"read_csv('{secret}')", f"'{secret}'", f"read_text('{secret}')"):
        project = _project(
            tmp_path,
            f'url = "duckdb:///{db}"\nquery = ' + _toml_str(f"SELECT * FROM {reader}"),
        )
        with pytest.raises(SourceError, match="file system operations are disabled"):
            project.ingest()
    assert not project.store_path.exists() or "secret-id" not in _customers(project)


def test_a_query_cannot_write_files(tmp_path: Path) -> None:
    db = _duckdb_source(tmp_path)
    out = tmp_path / "written.csv"
    for query in (
        f"SELECT * FROM contacts; COPY (SELECT 42) TO '{out}'",
        f"COPY (SELECT 42) TO '{out}'",
        f"EXPORT DATABASE '{tmp_path / 'dump'}'",
    ):
        project = _project(tmp_path, f'url = "duckdb:///{db}"\nquery = ' + _toml_str(query))
        with pytest.raises(SourceError, match="exactly one read-only SELECT"):
            project.ingest()
    assert not out.exists() and not (tmp_path / "dump").exists()


def test_a_query_cannot_attach_another_store(tmp_path: Path) -> None:
    db = _duckdb_source(tmp_path)
    victim = _victim_store(tmp_path)
    query = (
        f"ATTACH '{victim}' AS v; DELETE FROM v.customers; "
        "SELECT customer_id, first_name FROM contacts"
    )
    project = _project(tmp_path, f'url = "duckdb:///{db}"\nquery = ' + _toml_str(query))
    with pytest.raises(SourceError, match="exactly one read-only SELECT"):
        project.ingest()
    con = duckdb.connect(str(victim), read_only=True)
    assert con.execute("SELECT count(*) FROM customers").fetchall() == [(2,)]
    con.close()


def test_a_table_name_is_an_identifier_not_sql(tmp_path: Path) -> None:
    db = _duckdb_source(tmp_path)
    out = tmp_path / "written.csv"
    project = _project(
        tmp_path,
        f'url = "duckdb:///{db}"\nsource_table = '
        + _toml_str(f"contacts; COPY (SELECT 42) TO '{out}'"),
    )
    with pytest.raises(SourceError, match="query against"):
        project.ingest()
    assert not out.exists()


def test_init_with_a_query_that_copies_runs_nothing(tmp_path: Path) -> None:
    db = _duckdb_source(tmp_path)
    out = tmp_path / "written.csv"
    with pytest.raises(SourceError, match="exactly one read-only SELECT"):
        Project.init(
            [f"duckdb:///{db}#SELECT * FROM contacts; COPY (SELECT 42) TO '{out}'"],
            tmp_path / "proj",
        )
    assert not out.exists()


@pytest.mark.parametrize(
    "sql",
    [
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET memory_limit = '1GB'",
        "ATTACH '{victim}' AS v",
        "COPY (SELECT 1) TO '{out}'",
        "SELECT * FROM read_csv('{secret}')",
        "CREATE TABLE x AS SELECT 1",
    ],
)
def test_the_duckdb_source_connection_itself_refuses(tmp_path: Path, sql: str) -> None:
    """Behind the parser check, the connection a DuckDB source runs on is read-only, has no
    file, network or extension access and a locked configuration."""
    db = _duckdb_source(tmp_path)
    victim = _victim_store(tmp_path)
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    out = tmp_path / "out.csv"
    text = sql.format(victim=victim, out=out, secret=secret)
    with pytest.raises(duckdb.Error):
        reader, close = read_only_query("duckdb", f"duckdb:///{db}", tmp_path, text)
        try:
            reader.read_all()
        finally:
            close()
    assert not out.exists()


def test_sqlite_sources_are_read_only(tmp_path: Path) -> None:
    db = tmp_path / "crm.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE people (customer_id TEXT, first_name TEXT)")
    con.executemany("INSERT INTO people VALUES (?, ?)", CUSTOMERS)
    con.commit()
    con.close()
    victim = tmp_path / "victim.db"
    con = sqlite3.connect(victim)
    con.execute("CREATE TABLE customers (customer_id TEXT)")
    con.execute("INSERT INTO customers VALUES ('v1')")
    con.commit()
    con.close()
    for query in (
        "DELETE FROM people",
        "SELECT * FROM people; DELETE FROM people",
        f"ATTACH '{victim}' AS v",
        "WITH d AS (DELETE FROM people RETURNING *) SELECT * FROM d",
    ):
        project = _project(tmp_path, f'url = "sqlite:///{db}"\nquery = ' + _toml_str(query))
        with pytest.raises(SourceError, match="exactly one read-only SELECT"):
            project.ingest()
    for sql in ("DELETE FROM people", "INSERT INTO people VALUES ('x', 'y')"):
        with pytest.raises(Exception, match="readonly|read-only|read only"):
            reader, close = read_only_query("sqlite", f"sqlite:///{db}", tmp_path, sql)
            close()
    check = sqlite3.connect(db)
    assert check.execute("SELECT count(*) FROM people").fetchall() == [(2,)]
    check.close()


def test_sqlite_missing_file_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    project = _project(tmp_path, f'url = "sqlite:///{missing}"\nsource_table = "people"')
    with pytest.raises(SourceError, match="missing.db does not exist"):
        project.ingest()
    assert not missing.exists()
    with pytest.raises(SourceError, match="does not exist"):
        Project.init([f"sqlite:///{missing}#people"], tmp_path / "p2")
    assert not missing.exists()


@pytest.mark.postgres
def test_postgresql_sources_are_read_only(postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE sec_people (customer_id TEXT, first_name TEXT)")
        cur.execute("INSERT INTO sec_people VALUES ('c1', 'Ann'), ('c2', 'Bob')")
        conn.commit()
    query = "WITH d AS (DELETE FROM sec_people RETURNING *) SELECT * FROM d"
    project = _project(tmp_path, f'url = "{postgres_url}"\nquery = ' + _toml_str(query))
    with pytest.raises(SourceError, match="exactly one read-only SELECT"):
        project.ingest()
    for sql in (query, "DELETE FROM sec_people", "SELECT * INTO sec_copy FROM sec_people"):
        with pytest.raises(Exception, match="read-only transaction"):
            reader, close = read_only_query("postgresql", postgres_url, tmp_path, sql)
            try:
                reader.read_all()
            finally:
                close()
    with pg.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM sec_people")
        assert cur.fetchall() == [(2,)]
    project = _project(tmp_path, f'url = "{postgres_url}"\nsource_table = "sec_people"')
    assert project.ingest().sources[0].rows_loaded == 2


@pytest.mark.parametrize("value", ["4GB", "512MB", "1.5 GiB", "80%", "2TB", "750 mb"])
def test_memory_limit_accepts_sizes_and_percentages(tmp_path: Path, value: str) -> None:
    path = tmp_path / "personae.toml"
    path.write_text(f'[store]\nmemory_limit = "{value}"\n')
    assert load_config(path).store.memory_limit == value


@pytest.mark.parametrize(
    "value",
    ["4GB'; COPY (SELECT 1) TO 'x.csv'; --", "lots", "4", "4 parsecs", "0GB", "150%", "10KB"],
)
def test_memory_limit_rejects_anything_else(tmp_path: Path, value: str) -> None:
    path = tmp_path / "personae.toml"
    path.write_text(f'[store]\nmemory_limit = "{value}"\n')
    with pytest.raises(ConfigError, match="memory_limit"):
        load_config(path)


def test_a_crafted_memory_limit_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "pwned.csv"
    (tmp_path / "personae.toml").write_text(
        f"[store]\nmemory_limit = \"4GB'; COPY (SELECT 1) TO '{out}'; SET memory_limit='4GB\"\n"
    )
    with pytest.raises(ConfigError, match="memory_limit"):
        Project.open(tmp_path).status()
    assert not out.exists()


def _customers(project: Project) -> list[str]:
    with project.reader() as store:
        return [r[0] for r in store.con.execute("SELECT customer_id FROM customers").fetchall()]


# -- exports --------------------------------------------------------------------------------
FORMULAS = ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


@pytest.fixture()
def formula_project(tmp_path: Path) -> Project:
    """Customers whose text fields start like spreadsheet formulas, and orders with a
    negative amount (a return) that must stay a number."""
    folder = tmp_path / "shop"
    folder.mkdir()
    with open(folder / "customers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "first_name"])
        for i, text in enumerate(FORMULAS):
            w.writerow([f"c{i}", text])
        w.writerow(["c9", "plain"])
    (folder / "orders.csv").write_text(
        "order_id,customer_id,ordered_at,amount\no1,c1,2024-01-05,-5\no2,c2,2024-01-06,12.5\n"
    )
    (folder / "personae.toml").write_text(
        '[sources.customers]\ntable = "customers"\npath = "customers.csv"\n'
        "[sources.customers.columns]\n"
        'customer_id = "customer_id"\nfirst_name = "first_name"\n'
        '[sources.orders]\ntable = "orders"\npath = "orders.csv"\n'
        "[sources.orders.columns]\n"
        'order_id = "order_id"\ncustomer_id = "customer_id"\nordered_at = "ordered_at"\n'
        'amount = "amount"\n'
    )
    project = Project.open(folder)
    project.ingest()
    return project


def test_csv_export_neutralises_formulas(formula_project: Project, tmp_path: Path) -> None:
    out = tmp_path / "customers.csv"
    formula_project.export("customers", out)
    with open(out, newline="") as f:
        names = {r["customer_id"]: r["first_name"] for r in csv.DictReader(f)}
    assert names["c9"] == "plain"
    for i, text in enumerate(FORMULAS):
        assert names[f"c{i}"] == "'" + text, (i, names[f"c{i}"])
    raw = tmp_path / "raw.csv"
    formula_project.export("customers", raw, raw=True)
    with open(raw, newline="") as f:
        names = {r["customer_id"]: r["first_name"] for r in csv.DictReader(f)}
    assert [names[f"c{i}"] for i in range(len(FORMULAS))] == FORMULAS


def test_negative_numbers_stay_numbers(formula_project: Project, tmp_path: Path) -> None:
    out = tmp_path / "orders.csv"
    formula_project.export("orders", out)
    with open(out, newline="") as f:
        amounts = {r["order_id"]: r["amount"] for r in csv.DictReader(f)}
    assert float(amounts["o1"]) == -5 and float(amounts["o2"]) == 12.5


def test_parquet_export_is_untouched(formula_project: Project, tmp_path: Path) -> None:
    out = tmp_path / "customers.parquet"
    formula_project.export("customers", out, "parquet")
    cols = pq.read_table(out, columns=["customer_id", "first_name"]).to_pydict()
    names = dict(zip(cols["customer_id"], cols["first_name"], strict=True))
    assert [names[f"c{i}"] for i in range(len(FORMULAS))] == FORMULAS
