"""Database tables and queries as sources: DuckDB and SQLite files, and a real PostgreSQL
server started on loopback for the test."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from personae import Project, SourceError

ROWS = [
    ("c1", "Ann", "F", "2021-03-04"),
    ("c2", "Bob", "M", "2021-05-06"),
    ("c3", "Cy", "x?", "not a date"),
    (None, "Dee", "F", "2022-01-01"),
]


def _check(project: Project) -> None:
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded) == (4, 3)
    assert s.rejected == {"missing_id": 1}
    assert s.values_nulled == {"bad_category": 1, "bad_date": 1}
    with project.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT customer_id, first_name, gender, created_at::DATE::VARCHAR, source_row "
            "FROM customers ORDER BY 1"
        ).fetchall()
    assert rows == [
        ("c1", "Ann", "female", "2021-03-04", 1),
        ("c2", "Bob", "male", "2021-05-06", 2),
        ("c3", "Cy", None, None, 3),
    ]
    assert project.ingest().sources[0].status == "unchanged"


def test_duckdb_table(tmp_path: Path) -> None:
    db = tmp_path / "crm.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE contacts (customer_id VARCHAR, first_name VARCHAR, "
        "gender VARCHAR, created_at VARCHAR)"
    )
    con.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?)", ROWS)
    con.close()
    project, (p,) = Project.init([f"duckdb:///{db}#contacts"], tmp_path / "proj")
    assert p.source.table == "customers" and p.source.source_table == "contacts"
    _check(project)


def test_sqlite_table_and_query(tmp_path: Path) -> None:
    db = tmp_path / "crm.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE people (customer_id TEXT, first_name TEXT, gender TEXT, created_at TEXT)"
    )
    con.executemany("INSERT INTO people VALUES (?, ?, ?, ?)", ROWS)
    con.commit()
    con.close()
    project, _ = Project.init([f"sqlite:///{db}#people"], tmp_path / "proj")
    _check(project)
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "personae.toml").write_text(
        f'[sources.q]\ntable = "customers"\nurl = "sqlite:///{db}"\n'
        "query = \"SELECT customer_id, first_name FROM people WHERE gender = 'F'\"\n"
    )
    summary = Project.open(tmp_path / "q").ingest()
    assert summary.sources[0].rows_read == 2 and summary.sources[0].rows_loaded == 1
    project, (p,) = Project.init(
        [f"sqlite:///{db}#SELECT customer_id, first_name FROM people WHERE gender = 'M'"],
        tmp_path / "init_query",
    )
    assert p.source.query is not None and p.source.source_table is None
    assert project.ingest().tables["customers"] == 1


def test_bad_url_names_the_source(tmp_path: Path) -> None:
    (tmp_path / "personae.toml").write_text(
        '[sources.crm]\ntable = "customers"\nurl = "mysql://x/y"\nsource_table = "t"\n'
    )
    with pytest.raises(SourceError, match="Source 'crm': unsupported database URL scheme"):
        Project.open(tmp_path).ingest()
    sqlite3.connect(tmp_path / "none.db").close()  # an empty database: no table "missing"
    (tmp_path / "personae.toml").write_text(
        f'[sources.crm]\ntable = "customers"\nurl = "sqlite:///{tmp_path}/none.db"\n'
        'source_table = "missing"\n'
    )
    with pytest.raises(SourceError, match="Source 'crm': query against"):
        Project.open(tmp_path).ingest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback (Debian's postgresql package)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.skip("PostgreSQL server binaries not installed (make test installs them)")
    bindir = Path(bins[-1])
    base = Path(tempfile.mkdtemp(prefix="personae-pg-"))
    os.chmod(base, 0o777)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(
        [
            *as_user,
            str(bindir / "initdb"),
            "-D",
            str(base / "data"),
            "-U",
            "personae",
            "--auth=trust",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    proc = subprocess.Popen(
        [
            *as_user,
            str(bindir / "postgres"),
            "-D",
            str(base / "data"),
            "-p",
            str(port),
            "-k",
            str(base),
            "-h",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://personae@127.0.0.1:{port}/postgres"
    try:
        for _ in range(100):
            ok = subprocess.run(
                [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                capture_output=True,
            )
            if ok.returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("PostgreSQL did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.postgres
def test_postgresql_table(postgres_url: str, tmp_path: Path) -> None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(postgres_url) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE crm_contacts (customer_id TEXT, first_name TEXT, "
            "gender TEXT, created_at TEXT)"
        )
        for row in ROWS:
            cur.execute("INSERT INTO crm_contacts VALUES ($1, $2, $3, $4)", row)
        conn.commit()
    project, (p,) = Project.init([f"{postgres_url}#crm_contacts"], tmp_path)
    assert p.source.url == postgres_url
    _check(project)
