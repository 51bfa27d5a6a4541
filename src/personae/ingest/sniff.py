"""Sniffing: file format, encoding, delimiter, header and date formats of a source file.

The answers go into personae.toml (written by `personae init`) so a user can see and correct
them; ingest re-sniffs only what the config leaves on auto.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from personae.errors import SourceError

CHUNK = 16 * 1024 * 1024

# Candidate strptime formats, most specific first. Day-first and month-first are both tried
# and resolved by the values (a first field above 12 means day-first).
DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%m-%d-%Y",
    "%d-%m-%Y",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%Y%m%d",
)


@dataclass
class FileFacts:
    """What a pass over the bytes of a file tells: its hash, lines and text encoding."""

    sha256: str
    lines: int
    size: int
    encoding: str = "utf-8"


def _open_bytes(path: Path):
    with path.open("rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")


def file_facts(path: Path) -> FileFacts:
    """SHA-256 of the file's bytes, its number of text lines and its encoding (UTF-8 when every
    byte sequence is valid UTF-8, UTF-16 with a byte-order mark, else Latin-1)."""
    digest = hashlib.sha256()
    gzipped = head_bytes_raw(path, 2) == b"\x1f\x8b"
    if gzipped:  # the hash is of the file's bytes, the lines of its content
        with path.open("rb") as raw:
            while chunk := raw.read(CHUNK):
                digest.update(chunk)
    lines = 0
    last = b"\n"
    encoding = "utf-8"
    decoder = codecs.getincrementaldecoder("utf-8")()
    with _open_bytes(path) as fh:
        first = True
        while chunk := fh.read(CHUNK):
            if not gzipped:
                digest.update(chunk)
            if first and chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
                encoding, lines = "utf-16", -1
            first = False
            if encoding == "utf-16":
                continue
            lines += chunk.count(b"\n")
            last = chunk[-1:]
            if encoding == "utf-8" and not chunk.isascii():
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    encoding = "latin-1"
    if encoding == "utf-16":
        return FileFacts(digest.hexdigest(), -1, path.stat().st_size, encoding)
    if last != b"\n":
        lines += 1
    return FileFacts(digest.hexdigest(), lines, path.stat().st_size, encoding)


def head_bytes_raw(path: Path, size: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)


def head_bytes(path: Path, size: int = 65536) -> bytes:
    with _open_bytes(path) as fh:
        data: bytes = fh.read(size)
    return data


def detect_format(path: Path) -> str:
    """Parquet, xlsx, JSON lines, whitespace-separated text or delimited text."""
    name = path.name.lower()
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic == b"PAR1" or name.endswith(".parquet"):
        return "parquet"
    if magic[:2] == b"PK" or name.endswith((".xlsx", ".xlsm")):
        return "xlsx"
    if name.endswith((".xls",)):
        raise SourceError(
            f"{path}: old Excel .xls files are not supported. Save it as .xlsx or CSV."
        )
    head = head_bytes(path)
    if not head.strip():
        raise SourceError(f"{path}: the file is empty. Point the source at a file with data.")
    if b"\x00" in head[:4096] and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SourceError(
            f"{path}: this is a binary file, not text, Parquet or xlsx. Export it as CSV."
        )
    text = head.decode("latin-1").lstrip("\ufeff\xef\xbb\xbf")
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    if first.startswith("{") and name.endswith((".json", ".jsonl", ".ndjson", ".json.gz")):
        return "jsonl"
    if first.startswith("{"):
        return "jsonl"
    if _is_whitespace_separated(text):
        return "whitespace"
    return "csv"


def _is_whitespace_separated(text: str) -> bool:
    """True when no delimiter char appears but lines split into the same number of fields on
    runs of blanks (e.g. CDNOW's fixed-width-ish text)."""
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if len(lines) > 1 and not lines[-1].endswith("\n"):
        lines = lines[:-1] or lines
    if not lines or any(ch in text for ch in ",;\t|"):
        return False
    counts = {len(ln.split()) for ln in lines[1:]} or {len(lines[0].split())}
    return len(counts) == 1 and counts.pop() > 1


def whitespace_header(path: Path, encoding: str) -> tuple[bool, int]:
    """Whether a whitespace file's first line is a header, and how many fields lines have."""
    text = head_bytes(path).decode(_py_encoding(encoding), errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    first = lines[0].split()
    rest = lines[1].split() if len(lines) > 1 else first
    numeric = re.compile(r"^-?[\d.,/:-]+$")
    header = not any(numeric.match(v) for v in first) and any(numeric.match(v) for v in rest)
    return header, len(rest)


def _py_encoding(encoding: str) -> str:
    return {"latin-1": "latin-1", "utf-16": "utf-16"}.get(encoding, "utf-8-sig")


def guess_date_format(con: duckdb.DuckDBPyConnection, values: list[str]) -> str | None:
    """The one strptime format that parses every sample value, or None.

    Month-first and day-first both parse values like 4/9/2012; the values decide (a first
    field above 12 means day-first; a second field above 12 means month-first); with no
    evidence month-first wins and `personae init` says so in its comment.
    """
    vals = [v.strip() for v in values if v and v.strip()]
    if not vals:
        return None
    if all(re.fullmatch(r"\d{8}", v) for v in vals) and not all(
        1900 <= int(v[:4]) <= 2100 for v in vals
    ):
        return None
    if all(re.fullmatch(r"-?\d+(\.\d+)?", v) for v in vals) and not all(
        re.fullmatch(r"\d{8}", v) for v in vals
    ):
        return None
    con.execute("CREATE OR REPLACE TEMP TABLE _dates (v VARCHAR)")
    con.executemany("INSERT INTO _dates VALUES (?)", [[v] for v in vals])
    best, best_ok = None, 0
    for fmt in DATE_FORMATS:
        ok = con.execute(
            "SELECT count(*) FILTER (WHERE try_strptime(v, ?) IS NOT NULL) FROM _dates", [fmt]
        ).fetchall()[0][0]
        if ok > best_ok:
            best, best_ok = fmt, ok
    # A stray bad value must not hide the format: accept one that reads all values but
    # one, or at least 90% of them (ingest reports the rest as bad_date).
    failures = len(vals) - best_ok
    if best and best_ok >= 2 and (failures <= 1 or best_ok >= 0.9 * len(vals)):
        return best
    return None
