"""Text in the code pages people's files come in: detected by `init`, read by `ingest`
(transcoded to UTF-8 in one streaming pass where DuckDB's reader cannot read it), and the
`encoding` setting accepted. Each file is built from bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from personae import Project, SourceError
from personae.ingest.sniff import file_facts

BROKEN = Path(__file__).resolve().parents[1] / "data" / "broken"
HEADER = "customer_id,first_name,city,note\n"

CASES = {
    # a curly quote (0x93/0x94) and the euro sign (0x80) exist only in Windows-1252
    "cp1252": ("1,Zoë,Paris,“quoted”\n2,José,Málaga,it’s 5 €\n", b"\x93"),
    # Polish letters: Łódź is A3 F3 64 9F, which Windows-1252 reads as £ódŸ
    "cp1250": ("1,Zoë,Łódź,Wrocław\n2,Jan,Gdańsk,Kraków\n", b"\xa3"),
    # the euro sign is 0xA4 and œ 0xBD in ISO-8859-15 (¤ and ½ in Latin-1)
    "iso-8859-15": ("1,Zoë,Paris,cœur 12 €\n2,Šárka,Brno,\n", b"\xa4"),
    "latin-1": ("1,Zoë,Paris,café\n2,Jürgen,Köln,Straße\n", b"\xe9"),
    "utf-16": ("1,Zoë,Łódź,“quoted”\n2,José,Málaga,\n", b"\xff\xfe"),
    "utf-16-le": ("1,Zoë,Łódź,“quoted”\n2,José,Málaga,\n", b"\x00"),
}


def _rows(project: Project) -> list[tuple]:
    with project.store(read_only=True) as store:
        return store.con.execute(
            "SELECT customer_id, first_name, city, attributes->>'note' FROM customers ORDER BY 1"
        ).fetchall()


def _expected(text: str) -> list[tuple]:
    rows = [line.split(",") for line in text.splitlines()]
    return [(a, b, c, d or None) for a, b, c, d in rows]


@pytest.mark.parametrize("encoding", CASES)
def test_init_detects_and_ingest_reads(tmp_path: Path, encoding: str) -> None:
    text, marker = CASES[encoding]
    data = (HEADER + text).encode(encoding)
    assert marker in data
    path = tmp_path / "people.csv"
    path.write_bytes(data)
    assert file_facts(path).encoding == encoding
    project, (p,) = Project.init([path], tmp_path)
    assert p.source.table == "customers"
    assert p.staged.columns == ["customer_id", "first_name", "city", "note"]
    assert p.source.encoding == encoding
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rows_rejected) == (2, 2, 0)
    assert _rows(project) == _expected(text)


@pytest.mark.parametrize("setting", ["cp1252", "windows-1252", "CP1252"])
def test_the_encoding_setting_is_accepted(tmp_path: Path, setting: str) -> None:
    text = "1,Zoë,Paris,“quoted”\n2,José,Málaga,it’s 5 €\n"
    (tmp_path / "p.csv").write_bytes((HEADER + text).encode("cp1252"))
    (tmp_path / "personae.toml").write_text(
        f'[sources.p]\ntable = "customers"\npath = "p.csv"\nencoding = "{setting}"\n'
    )
    project = Project.open(tmp_path)
    assert project.ingest().sources[0].rows_loaded == 2
    assert _rows(project) == _expected(text)


def test_an_unknown_encoding_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text(HEADER + "1,a,b,c\n")
    (tmp_path / "personae.toml").write_text(
        '[sources.p]\ntable = "customers"\npath = "p.csv"\nencoding = "klingon"\n'
    )
    with pytest.raises(SourceError, match="encoding = 'klingon'"):
        Project.open(tmp_path).ingest()


def test_gzipped_cp1252_with_a_bad_row(tmp_path: Path) -> None:
    import gzip

    lines = [f"{i},Zoë,Paris,“n{i}”\n" for i in range(1, 301)]
    lines[99] = "100,Zoë,Paris,“x”,extra\n"
    (tmp_path / "p.csv.gz").write_bytes(gzip.compress((HEADER + "".join(lines)).encode("cp1252")))
    project, (p,) = Project.init([tmp_path / "p.csv.gz"], tmp_path)
    assert p.source.encoding == "cp1252"
    (s,) = project.ingest().sources
    assert (s.rows_read, s.rows_loaded, s.rejected) == (300, 299, {"bad_row": 1})
    with project.store(read_only=True) as store:
        rows = store.con.execute(
            "SELECT source_row, raw->>'line' FROM rejects_customers"
        ).fetchall()
    assert rows == [(101, "100,Zoë,Paris,“x”,extra")]


@pytest.mark.parametrize("name", ["cp1252.csv", "utf16.csv"])
def test_corpus_files(tmp_path: Path, name: str) -> None:
    project, (p,) = Project.init([BROKEN / name], tmp_path)
    (s,) = project.ingest().sources
    assert s.rows_read == s.rows_loaded == (3 if name == "cp1252.csv" else 2)
    cities = {r[2] for r in _rows(project)}
    assert cities & {"Köln", "Łódź"}
