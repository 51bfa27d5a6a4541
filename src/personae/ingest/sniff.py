"""Sniffing: file format, encoding, delimiter, header and date formats of a source file.

The answers go into personae.toml (written by `personae init`) so a user can see and correct
them; ingest re-sniffs only what the config leaves on auto.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import re
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import duckdb

from personae.errors import SourceError

CHUNK = 16 * 1024 * 1024
T = TypeVar("T")

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
    """What a pass over the bytes of a file tells: its hash, lines, text encoding and line ends.

    `lines` counts physical lines as Python's universal newlines do (\\n, \\r\\n and a lone
    \\r each end one); -1 when the encoding is UTF-16 (counted when the file is transcoded).
    `mixed_newlines` is true when the file mixes line ends (or uses lone \\r), which DuckDB's
    reader cannot follow."""

    sha256: str
    lines: int
    size: int
    encoding: str = "utf-8"
    mixed_newlines: bool = False


# Single-byte code pages told apart by what their non-ASCII bytes decode to; on a tie the
# first wins (Latin-1 is read by DuckDB without a transcoding pass).
SINGLE_BYTE = ("latin-1", "cp1252", "iso-8859-15", "cp1250")
# DuckDB's CSV reader reads these itself; every other encoding is transcoded to UTF-8 first.
NATIVE_ENCODINGS = ("utf-8", "latin-1")
_WORD = re.compile(rb"[^\s,;|\t\"'()<>]*[\x80-\xff][^\s,;|\t\"'()<>]*")
_TYPOGRAPHY = set(
    "\u201c\u201d\u201e\u2018\u2019\u201a\u2013\u2014\u2026\u2022\u20ac\u2122\u00a3\u00b0"
)


def _open_bytes(path: Path):
    with path.open("rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else path.open("rb")


def truncated(path: Path) -> SourceError:
    return SourceError(
        f"{path}: the compressed file ends early: truncated download? Download it again "
        "(or check it with `gzip -t`)."
    )


def bom_encoding(head: bytes) -> str | None:
    """UTF-16 from a byte-order mark, or from zero bytes in every other position."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    sample = head[:4096]
    if len(sample) >= 8:
        half = len(sample) // 2
        odd = sample[1::2].count(0)
        even = sample[0::2].count(0)
        if odd > 0.4 * half and even < 0.05 * half:
            return "utf-16-le"
        if even > 0.4 * half and odd < 0.05 * half:
            return "utf-16-be"
    return None


def _score(words: list[bytes], encoding: str) -> int:
    """How plausible the non-ASCII characters of `words` are when decoded as `encoding`:
    letters in words count for it, C1 control characters and symbols inside words against."""
    import unicodedata

    score = 0
    for word in words:
        try:
            text = word.decode(encoding)
        except UnicodeDecodeError:
            score -= 10
            continue
        for i, ch in enumerate(text):
            if ch.isascii():
                continue
            prev = text[i - 1] if i else " "
            nxt = text[i + 1] if i + 1 < len(text) else " "
            if ch.isalpha():
                if prev.isdigit() or nxt.isdigit():
                    score -= 2  # Ł20.00 is £20.00 in another code page
                elif prev.isalpha() or nxt.isalpha():
                    score += -2 if ch.isupper() and prev.isalpha() and prev.islower() else 2
            elif unicodedata.category(ch) == "Cc":
                score -= 10
            elif ch in _TYPOGRAPHY:
                score += 1
            elif prev.isalpha() or nxt.isalpha() or ch == "\u00a4":
                score -= 1
    return score


def guess_single_byte(words: list[bytes]) -> str:
    """The single-byte code page under which the sampled non-ASCII words read best."""
    scores = {enc: _score(words, enc) for enc in SINGLE_BYTE}
    return max(SINGLE_BYTE, key=lambda enc: scores[enc])


def file_facts(path: Path) -> FileFacts:
    """SHA-256 of the file's bytes, its number of text lines, its encoding (UTF-8 when every
    byte sequence is valid UTF-8, UTF-16 with a byte-order mark or zero bytes in every other
    position, else the single-byte code page its non-ASCII words read best in) and whether it
    mixes line ends. A gzip file that ends early is a SourceError naming it."""
    digest = hashlib.sha256()
    gzipped = head_bytes_raw(path, 2) == b"\x1f\x8b"
    if gzipped:  # the hash is of the file's bytes, the lines of its content
        with path.open("rb") as raw:
            while chunk := raw.read(CHUNK):
                digest.update(chunk)
    counter = LineCounter()
    encoding = "utf-8"
    words: list[bytes] = []
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with _open_bytes(path) as fh:
            first = True
            while chunk := fh.read(CHUNK):
                if not gzipped:
                    digest.update(chunk)
                if first:
                    encoding = bom_encoding(chunk) or encoding
                first = False
                if encoding.startswith("utf-16"):
                    continue
                counter.add(chunk)
                if encoding == "utf-8" and not chunk.isascii():
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        encoding = "single-byte"
                if encoding == "single-byte" and len(words) < 3000:
                    words += _WORD.findall(chunk, 0, 4 * 1024 * 1024)[:3000]
    except (EOFError, gzip.BadGzipFile, zlib.error):
        raise truncated(path) from None
    size = path.stat().st_size
    if encoding.startswith("utf-16"):
        return FileFacts(digest.hexdigest(), -1, size, encoding)
    if encoding == "single-byte":
        encoding = guess_single_byte(words)
    return FileFacts(digest.hexdigest(), counter.lines, size, encoding, counter.mixed)


class Lookahead:
    """The passes over a delimited file's bytes: the search for a \\r before DuckDB may read
    it (`plain_utf8_lines`) and `file_facts` while it does, each in a background thread.
    When a file of `paths` is taken, the search of the next one starts, so its bytes are
    gone through while DuckDB parses this one (at 10 M customers the search kept DuckDB
    idle 16 s before the orders file, read cold from disk). Only one file ahead: the
    passes of every file at once took the cores and the disk from the first file's read.
    The threads are daemons: a run that fails or is interrupted does not wait for the hash
    of a large file. An error is raised by the futures' `result()`."""

    def __init__(self, paths: list[Path]) -> None:
        self._order = [p.resolve() for p in paths]
        self._searches: dict[Path, tuple[tuple[int, int], Future[bool]]] = {}

    def take(self, path: Path) -> tuple[Future[bool], Future[FileFacts]]:
        """The futures of both passes over one file (the search's perhaps done already)."""
        key = path.resolve()
        found = self._searches.pop(key, None)
        facts = in_background(partial(file_facts, path))
        if found is None or found[0] != _stamp(path):  # not searched ahead, or changed since
            found = _stamp(path), in_background(partial(plain_utf8_lines, path))
        self._search_next(key, after=found[1])
        return found[1], facts

    def _search_next(self, key: Path, after: Future[bool]) -> None:
        """Start the search of the file after `key`, once `after` is done (one search at a
        time reads the disk)."""
        if key not in self._order[:-1]:
            return
        following = self._order[self._order.index(key) + 1]
        if following in self._searches or not following.is_file():
            return

        def search() -> bool:
            wait([after])
            return plain_utf8_lines(following)

        self._searches[following] = _stamp(following), in_background(search)


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def in_background(compute: Callable[[], T]) -> Future[T]:
    """`compute()` in a daemon thread; its error is raised by the future's `result()`."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(compute())
        except BaseException as err:  # handed to the reader in result()
            future.set_exception(err)

    threading.Thread(target=run, name="file-pass", daemon=True).start()
    return future


def plain_utf8_lines(path: Path) -> bool:
    """Whether the file is not compressed, its first CHUNK bytes are UTF-8 and no line of it
    ends in \\r: what `file_facts` will most likely say of the whole file, so DuckDB may read
    it while the facts are computed. (A mixed line end is an error in DuckDB's reader, which
    would end the run's transaction, so the file is searched for one first, at memchr speed.)"""
    with path.open("rb") as fh:
        head = fh.read(CHUNK)
        if head[:2] == b"\x1f\x8b" or bom_encoding(head) or b"\r" in head:
            return False
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head)  # a cut last character is fine
        except UnicodeDecodeError:
            return False
        while chunk := fh.read(CHUNK):
            if b"\r" in chunk:
                return False
    return True


class LineCounter:
    """Counts lines over chunks of bytes at C speed: \\n, \\r\\n and a lone \\r each end one."""

    def __init__(self) -> None:
        self.lf = self.cr = self.crlf = 0
        self.last = b""

    def add(self, chunk: bytes) -> None:
        self.lf += chunk.count(b"\n")
        if b"\r" in chunk:
            self.cr += chunk.count(b"\r")
            self.crlf += chunk.count(b"\r\n")
        if self.last == b"\r" and chunk[:1] == b"\n":
            self.crlf += 1
        if chunk:
            self.last = chunk[-1:]

    @property
    def lines(self) -> int:
        return self.lf + self.cr - self.crlf + (self.last not in (b"\n", b"\r", b""))

    @property
    def mixed(self) -> bool:
        """Lone \\r line ends, or \\r\\n and \\n mixed: DuckDB's reader cannot follow them."""
        return self.cr > self.crlf or 0 < self.crlf < self.lf


def head_bytes_raw(path: Path, size: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)


def head_bytes(path: Path, size: int = 65536) -> bytes:
    try:
        with _open_bytes(path) as fh:
            data: bytes = fh.read(size)
    except (EOFError, gzip.BadGzipFile, zlib.error):
        raise truncated(path) from None
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
    wide = bom_encoding(head)
    if b"\x00" in head[:4096] and not wide:
        raise SourceError(
            f"{path}: this is a binary file, not text, Parquet or xlsx. Export it as CSV."
        )
    text = head.decode(wide or "latin-1", errors="replace").lstrip("\ufeff\xef\xbb\xbf")
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
    """Python's codec for an encoding name of the config (UTF-8 drops a byte-order mark)."""
    name = codecs.lookup(encoding).name if encoding != "auto" else "utf-8"
    return "utf-8-sig" if name in ("utf-8", "utf-8-sig") else name


@dataclass
class Dialect:
    """How a delimited text file is laid out: what `sniff_dialect` finds in its head."""

    delimiter: str
    header: bool
    columns: list[str]


_TYPED = re.compile(
    r"[-+]?[£$€]?\s*\d[\d,. ]*%?|[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|nan|inf|"
    r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?.*|true|false",
    re.IGNORECASE,
)
DELIMITERS = (",", "\t", ";", "|")


def _typed(value: str) -> bool:
    return bool(_TYPED.fullmatch(value.strip()))


def column_names(header: list[str]) -> list[str]:
    """Column names as DuckDB's reader makes them: trimmed, `column<i>` when empty, repeats
    (compared case-insensitively) suffixed `_1`, `_2`, ..."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(header):
        name = raw.strip() or f"column{i}"
        key = name.lower()
        if key in seen:
            seen[key] += 1
            name = f"{name}_{seen[key]}"
        else:
            seen[key] = 0
        names.append(name)
    return names


def sniff_dialect(
    text: str, complete: bool, delimiter: str | None = None, header: bool | None = None
) -> Dialect:
    """Delimiter, header and column names from the first lines of a text file.

    The delimiter is the one that splits most records (at least half) into the same number
    (above one) of fields; records of another width do not change the answer (they are
    rejected as bad_row when the file is read). The first record is a header unless one of
    its values looks like a number or a date, or a column whose other values are nearly all
    numbers or dates has a word on top (then it is a header whatever the rest). Raises
    ValueError when no delimiter gives a consistent width and lines are not single values:
    the text is not a table."""
    lines = text.splitlines(keepends=True)
    if not complete and len(lines) > 1:
        lines = lines[:-1]
    lines = lines[:5000]
    best: tuple[int, int, str, list[list[str]]] | None = None
    for d in [delimiter] if delimiter else DELIMITERS:
        records = [r for r in csv.reader(lines, delimiter=d, strict=False) if r]
        widths = Counter(len(r) for r in records)
        if not widths:
            continue
        width, count = max(widths.items(), key=lambda wc: (wc[1], wc[0]))
        score = count if width > 1 and count >= 0.5 * len(records) else 0
        if best is None or score > best[0]:
            best = (score, width, d, records)
    if best is None:
        return Dialect(delimiter or ",", bool(header), [] if header is False else ["column0"])
    score, width, delim, records = best
    if score == 0 and not delimiter:
        plain = sum(1 for ln in lines if not any(ch in ln for ch in DELIMITERS))
        if plain < 0.9 * len(lines):
            raise ValueError(
                "no delimiter (comma, semicolon, tab or |) splits its lines into the same "
                "number of fields"
            )
        width = 1
    first = records[0]
    if header is None:
        rest = records[1:]
        header = not any(_typed(v) for v in first if v.strip())
        for i, v in enumerate(first):
            values = [r[i] for r in rest if len(r) == len(first) and r[i].strip()]
            typed_below = values and sum(map(_typed, values)) >= 0.9 * len(values)
            if v.strip() and not _typed(v) and typed_below:
                header = True
    if header:
        if len(first) != width and len(records) > 2:
            agree = sum(1 for r in records[1:] if len(r) == width)
            if agree > 0.5 * (len(records) - 1):
                raise ValueError(
                    f"its first line has {len(first)} fields but most lines have {width}"
                )
        return Dialect(delim, True, column_names(first))
    return Dialect(delim, False, [f"column{i + 1}" for i in range(width)])


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
