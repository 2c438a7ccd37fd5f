"""``spreadedge ingest``: stream market data files into market.quotes, ticks or candles.

Files are CSV (with a header row) or JSON Lines, optionally gzip- (``.gz``) or zstd-compressed
(``.zst``). Rows go as text through COPY into the transaction's staging table
(``market.stage_rows``), and ``market.load_staged_<kind>`` validates them in SQL, inserts the valid
ones and returns the rejects; this module only reads files, moves text and writes the rejects
file. Each batch is one transaction, so a killed load leaves no half-loaded batch; with ``strict``
the whole run is one transaction that is rolled back when any row is rejected. A batch (a --strict
run) that PostgreSQL aborts to break a deadlock with another load (40P01) is loaded again, with a
warning logged, up to DEADLOCK_ATTEMPTS times. A leading UTF-8
byte-order mark is skipped; a CSV file whose header row lacks a required field or names one twice
(names are read without surrounding spaces), and a file whose compressed data its name does not
say or that is not valid from its start (an empty .gz or .zst file too), or whose data is corrupt
anywhere (a CRC or checksum that does not match), are refused before anything loads; a
compressed file cut short stops the run (with --strict, nothing loads). A
staged JSON field that is an array, object, boolean, NaN or Infinity rejects its row, and so does
a NUL or bytes that are not UTF-8 in a staged field (in the others, which are ignored, they do
not). A non-strict run that fails part-way still writes the rejects of the batches it committed;
one that the server's full disk stops (53100) says which batch of lines was not loaded, what
loaded before it, and to free space and run it again (IngestError with a hint).
A CSV line of spaces or of empty fields alone is blank (no record), as a line of spaces is in
JSON Lines. A header row again in a CSV file (files joined together) is read as the header of
the records after it (one that lacks a field or names one twice stops the run there), a
byte-order mark at the start of a later JSON line is skipped, a JSON object naming a staged field
twice rejects its row, and a file given twice is refused before anything loads. A reject's line
is the line its record starts on; a CSV record over several lines whose staged field holds line
breaks (the lines after a quote left open) is rejected naming the lines it ran
over.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import psycopg
import zstandard
from psycopg import sql

from spreadedge import pooler

KINDS = ("quotes", "ticks", "candles")
DEFAULT_BATCH_ROWS = 50_000
# How often a batch (or a --strict run) that PostgreSQL aborted to break a deadlock (40P01) is
# tried, in all: see _flush.
DEADLOCK_ATTEMPTS = 3
log = logging.getLogger("spreadedge.ingest")
# Staged fields a CSV header may leave out: the loaders accept them empty (received_at defaults to
# the load time, a tick's side may be unknown). Without any other, every row would be rejected.
OPTIONAL_FIELDS = frozenset({"received_at", "side"})

Row = tuple[int, dict[str, Any] | None, str | None]  # line number, fields (or None), parse problem


class IngestError(ValueError):
    """A file cannot be ingested as it is named or asked for; ``hint``, when given, says what to do."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


DISK_FULL_HINT = (
    "free space on the database server's disk (the file system of its data directory, or of the "
    "tablespace or pg_wal the message names), then run the same command again: the rows already "
    "loaded are skipped as duplicates"
)


@dataclass
class Summary:
    """What one ``ingest`` run did."""

    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    seconds: float = 0.0
    rejects_files: list[Path] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        rows = self.loaded + self.duplicates + self.rejected
        return rows / self.seconds if self.seconds > 0 else 0.0


class _CountingReader(io.RawIOBase):
    """A binary reader that reports how many bytes of the underlying (compressed) file were read."""

    def __init__(self, raw: IO[bytes], progress: Callable[[int], None]) -> None:
        self._raw = raw
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self._progress(len(data))
        return len(data)


class _TruncatedError(EOFError):
    """Compressed data that ends inside a frame (a file cut short)."""


class _ZstdFrames(io.RawIOBase):
    """The zstd frames of a file, one after another, decompressed.

    why not ZstdDecompressor.stream_reader: at the end of a file cut short inside a frame it
    returns what it decompressed and then end of file, so a truncated .zst file loaded its first
    part as if it were whole (and its last, cut line too); this reader raises instead, as gzip does.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._decompressor = zstandard.ZstdDecompressor()
        self._frame: Any = None  # the frame being decompressed, None between frames
        self._out = b""
        self._offset = 0  # how much of _out was returned

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._offset >= len(self._out):
            data = self._raw.read(1 << 16)
            if not data:
                if self._frame is not None:
                    raise _TruncatedError("the zstd data ends inside a frame")
                return 0
            out = []
            while data:
                if self._frame is None:
                    self._frame = self._decompressor.decompressobj()
                out.append(self._frame.decompress(data))
                if self._frame.eof:  # a frame ended: the rest of the data starts the next one
                    data, self._frame = self._frame.unused_data, None
                else:
                    data = b""
            self._out, self._offset = b"".join(out), 0
        count = min(len(buffer), len(self._out) - self._offset)
        buffer[:count] = self._out[self._offset : self._offset + count]
        self._offset += count
        return count


# the compression of a file, by its suffix
_COMPRESSION = {".gz": "gzip", ".zst": "zstd"}
# the first bytes of gzip and zstd data: a compressed file named as if it were not is refused
_MAGIC = {b"\x1f\x8b": "gzip (.gz)", b"\x28\xb5\x2f\xfd": "zstd (.zst)"}
# what reading a compressed file that is cut short or not what its name says raises
_UNREADABLE = (EOFError, OSError, zlib.error, zstandard.ZstdError)


def _decompressed(path: Path, counted: io.BufferedReader) -> IO[bytes]:
    """The file's bytes, decompressed by suffix (.gz, .zst)."""
    if path.suffix == ".gz":
        return gzip.GzipFile(fileobj=counted)  # type: ignore[return-value]
    if path.suffix == ".zst":
        return io.BufferedReader(_ZstdFrames(counted))
    start = counted.peek(4)
    for magic, kind in _MAGIC.items():
        if start.startswith(magic):
            raise IngestError(f"{path}: the file holds {kind} compressed data, but its name does not say so")
    return counted


def _unreadable(path: Path, exc: BaseException, line: int) -> IngestError:
    """The error of a file whose compressed data ends early or is not valid (or that cannot be
    read), after ``line``."""
    compression = _COMPRESSION.get(path.suffix)
    if isinstance(exc, EOFError):
        problem = "the compressed data ends early (the file is truncated)"
    elif compression:
        problem = f"the data is not valid {compression} ({exc})"
    else:
        problem = str(exc)  # an I/O error of the file itself
    where = f"past the record on line {line}" if line else "its first record"
    return IngestError(f"{path}: cannot read {where}: {problem}")


def file_format(path: Path) -> str:
    """csv or jsonl, from the suffix under any compression suffix."""
    suffixes = [s for s in path.suffixes if s not in (".gz", ".zst")]
    last = suffixes[-1] if suffixes else ""
    if last == ".csv":
        return "csv"
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise IngestError(
        f"{path}: cannot tell the format from the name (.csv or .jsonl, then optionally .gz or .zst)"
    )


def _text_problem(record: dict[str, Any], staged: Collection[str]) -> str | None:
    """Why a record's text cannot be staged: a staged field "holds a NUL character" (PostgreSQL
    text cannot hold one) or "is not valid UTF-8" (bytes read as surrogate escapes); the reason
    names the field. None when it can.

    why staged fields only: the others are ignored, and a NUL or a stray byte in one of them (a
    JSON "meta", an extra CSV column) rejected the whole row. The checks are inline: no function
    call per valid field.
    """
    for name in staged:
        value = record.get(name)
        if isinstance(value, str):
            if "\x00" in value:
                return f"{name} holds a NUL character"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"{name} is not valid UTF-8"
    return None


def _csv_records(text: IO[str]) -> Iterator[tuple[int, int, list[str] | None, str | None]]:
    """(line where the record starts, line where it ends, its fields or None, problem) for every
    CSV record that is not blank (a blank line, one of spaces or of empty fields alone)."""
    reader = csv.reader(text)
    while True:
        # why: a quoted field may span lines, and reader.line_num is then the record's last line
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the csv module's size limit: that record only
            yield start, reader.line_num, None, f"not valid CSV: {exc}{_spanned(start, reader.line_num)}"
            continue
        # a blank line is no record, nor one of only empty fields or spaces. why: a line of spaces,
        # or of commas alone (the empty rows a spreadsheet leaves at the end of its export), was
        # rejected as "exchange is missing", and with --strict the whole run loaded nothing; JSON
        # Lines skip a line of spaces too. any() stops at the first field (the common case)
        if any(values) and (len(values) > 1 or values[0].strip()):
            yield start, reader.line_num, values, None


def _spanned(start: int, end: int) -> str:
    """What a rejected CSV record that ran over several lines adds to its reason ("" for one line).

    why: a quote left open makes the csv module read the lines after it, rows of their own, as
    one field, until a quote closes it (or the field passes the size limit): those rows were
    neither loaded nor rejected, and the one reject, at the record's first line, did not say so.
    """
    if end <= start:
        return ""
    return f" (the record runs from line {start} to line {end}: a quote left open?)"


def _line_breaks_problem(record: dict[str, Any], staged: Collection[str], start: int, end: int) -> str | None:
    """Why a CSV record that runs over several lines cannot be staged: a staged field (never text
    of several lines) holds line breaks, the lines after a quote left open; None when none does."""
    for name in staged:
        value = record.get(name)
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            return f"{name} holds line breaks{_spanned(start, end)}"
    return None


def _header_names(values: list[str]) -> list[str]:
    """A CSV header row's field names, without the spaces around them.

    why: the values are read without surrounding spaces, the names were not: a header written
    "exchange, symbol, ..." was refused as having no symbol column, and its rows were never read.
    """
    return [name.strip().removeprefix("\ufeff") for name in values]


def _header_problem(header: list[str], columns: Collection[str]) -> tuple[list[str], list[str]]:
    """The fields of ``columns`` a CSV header row names more than once, and the required ones it
    does not name."""
    twice = [c for c in columns if header.count(c) > 1]
    missing = [c for c in columns if c not in OPTIONAL_FIELDS and c not in header]
    return twice, missing


class _HeaderAgainError(ValueError):
    """A header row again in a CSV file that names a field twice or lacks a required one."""


def _header_again(values: list[str], staged: Collection[str], line_no: int) -> list[str] | None:
    """The names of a header row found again past the first (files joined together), or None
    when ``values`` are not one; raises _HeaderAgainError when it cannot be read.

    why: `cat day1.csv day2.csv` repeats the header row. Read as a record, it was rejected
    ("unknown exchange exchange"; with --strict nothing loaded), and when the second file's
    columns were in another order its records were read by the first file's names: quantities
    loaded as prices. A record that holds two staged names is never a row of market data.
    """
    names = _header_names(values)
    if len(set(names).intersection(staged)) < 2:
        return None
    twice, missing = _header_problem(names, staged)
    if twice or missing:
        problem = (
            f"names {', '.join(twice)} more than once"
            if twice
            else f"has no {', '.join(missing)} column{'s' if len(missing) > 1 else ''}"
        )
        raise _HeaderAgainError(f"the header row again on line {line_no} (files joined together?) {problem}")
    return names


def _csv_rows(text: IO[str], staged: Collection[str]) -> Iterator[Row]:
    header: list[str] | None = None
    starts: frozenset[str] = frozenset()  # what the first value of a header row again may be
    for line_no, end, values, problem in _csv_records(text):
        if values is None:
            yield line_no, None, problem
        elif header is None:
            header = _header_names(values)
            starts = frozenset(header).union(staged)
            starts |= {"\ufeff" + name for name in starts}  # a joined file saved with a byte-order mark
        elif values[0] in starts and (again := _header_again(values, staged, line_no)) is not None:
            header = again  # rare: only a record that starts as a header row pays
        elif len(values) > len(header):
            yield (
                line_no,
                None,
                f"{len(values) - len(header)} more fields than the header names{_spanned(line_no, end)}",
            )
        else:
            record = dict(zip(header, values, strict=False))  # a short row leaves its last fields out
            problem = _text_problem(record, staged)
            if problem is None and end > line_no:  # rare: only records that run over lines pay
                problem = _line_breaks_problem(record, staged, line_no, end)
            yield line_no, (None if problem else record), problem


class _NamedTwice(dict[str, Any]):
    """A JSON object that names a field more than once (its last value kept, as json does)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.twice = {name for i, (name, _) in enumerate(pairs) if any(n == name for n, _ in pairs[:i])}

    def problem(self, staged: Collection[str]) -> str | None:
        """Why the record cannot be staged: a staged field named more than once; None when none is."""
        twice = [name for name in staged if name in self.twice]
        return f"{', '.join(twice)} named more than once" if twice else None


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object read as a dict, a _NamedTwice when it names a field more than once.

    why: of {"price": "1", "price": "2"} json keeps the last value, and the row loaded at a price
    of 2 whichever was meant; a CSV header naming a field twice is refused. Only the staged
    fields are checked (_NamedTwice.problem): a field named twice among the ignored rejects nothing.
    """
    record = dict(pairs)
    return record if len(record) == len(pairs) else _NamedTwice(pairs)


# numbers kept as their text: the database parses them exactly. why one decoder, made once:
# json.loads with arguments makes a decoder per line, which cost what object_pairs_hook costs
_JSON = json.JSONDecoder(parse_float=str, parse_int=str, object_pairs_hook=_json_object)


def _jsonl_rows(text: IO[str], staged: Collection[str]) -> Iterator[Row]:
    for line_no, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            try:
                record = _JSON.decode(line)
            except json.JSONDecodeError:
                if not line.startswith("\ufeff"):
                    raise
                # why: files joined together (`cat a.jsonl b.jsonl`), each saved with a byte-order
                # mark, have one at the start of a later line, and its record was rejected
                record = _JSON.decode(line[1:])
        except json.JSONDecodeError as exc:
            yield line_no, None, f"not valid JSON: {exc.msg}"
            continue
        except RecursionError:
            yield line_no, None, "not valid JSON: nested too deeply"
            continue
        if not isinstance(record, dict):
            yield line_no, None, "not a JSON object"
            continue
        problem = _text_problem(record, staged)
        if problem is None and type(record) is _NamedTwice:  # rare: only such records pay
            problem = record.problem(staged)
        yield line_no, (None if problem else record), problem


@contextlib.contextmanager
def _open_text(path: Path, progress: Callable[[int], None]) -> Iterator[IO[str]]:
    """The file's text, decompressed, as UTF-8 without a leading byte-order mark."""
    with path.open("rb") as raw:
        counted = io.BufferedReader(_CountingReader(raw, progress))
        with io.TextIOWrapper(
            _decompressed(path, counted),
            # why utf-8-sig: a file saved with a byte-order mark (Excel, some Windows tools) would
            # name its first CSV column "\ufeffexchange" and make its first JSON line invalid
            encoding="utf-8-sig",
            # why surrogateescape: bytes that are not UTF-8 reject their line, not the whole run
            errors="surrogateescape",
            # why by format: JSON Lines end at \n only (a \r before it is whitespace), so a \r
            # inside a line neither splits it nor moves the line numbers of the rejects after it;
            # the csv module reads records itself and wants lines untranslated, split at any end
            newline="" if file_format(path) == "csv" else "\n",
        ) as text:
            yield text


def read_rows(path: Path, progress: Callable[[int], None], staged: Collection[str]) -> Iterator[Row]:
    """(line number, fields, problem) for every record of a file; a record's line is its first.
    ``staged`` are the fields a loader stages: one that holds a NUL or bytes that are not UTF-8,
    and a CSV record whose staged field holds line breaks (the lines after a quote left open),
    are a problem; the other fields are ignored.

    Raises IngestError when compressed data ends early or is not valid: the records before it
    are all yielded, a record cut short never is.
    """
    reader = _csv_rows if file_format(path) == "csv" else _jsonl_rows
    line = 0
    with _open_text(path, progress) as text:
        try:
            for row in reader(text, staged):
                line = row[0]
                yield row
        except _UNREADABLE as exc:
            raise _unreadable(path, exc, line) from exc
        except _HeaderAgainError as exc:
            raise IngestError(f"{path}: {exc}") from None


def check_file(path: Path, kind: str, columns: list[str]) -> None:
    """Refuse a file that cannot load at all: compressed data that its name does not say is
    compressed, or that is not valid at its start or corrupt anywhere, a file whose first line
    holds a NUL character (not UTF-8 text: UTF-16), and a CSV file whose header row lacks a field
    of ``kind`` that is not optional.

    ``columns`` are the staged fields (market.stage_rows). An empty file has nothing to load and
    passes, but an empty compressed file is refused as cut short.
    """
    # why: gzip and zstd data is never empty (even of no rows), and an empty .gz or .zst file, a
    # download or copy that failed before its first byte, read as no rows: the run loaded nothing
    # and exited 0, where a file cut after its first byte stops it with status 1
    if path.suffix in (".gz", ".zst") and path.stat().st_size == 0:
        raise _unreadable(path, EOFError(), 0)
    with _open_text(path, lambda nbytes: None) as text:
        try:
            first = next(_csv_records(text), None) if file_format(path) == "csv" else text.readline()
        except _UNREADABLE as exc:
            raise _unreadable(path, exc, 0) from exc
    _check_compressed_whole(path)
    start = ",".join(first[2] or ()) if isinstance(first, tuple) else first or ""
    if "\x00" in start:
        # why: a UTF-16 export (Excel's "Unicode text", Windows PowerShell's > redirection) was
        # refused as a header with no exchange column, or every JSON line of it was rejected; no
        # UTF-8 header row or JSON line holds a NUL character (JSON writes it as \u0000)
        raise IngestError(
            f"{path}: its first line holds NUL characters: it is not UTF-8 text (UTF-16? save it as UTF-8)"
            " (nothing was loaded)"
        )
    if not isinstance(first, tuple):  # a JSON Lines file, or an empty CSV file
        return
    _, _, values, problem = first
    if values is None:
        raise IngestError(f"{path}: the header row is {problem} (nothing was loaded)")
    header = _header_names(values)
    twice, missing = _header_problem(header, columns)
    if twice:
        # why: of two columns of one name the last one's values were loaded, whichever was meant
        raise IngestError(
            f"{path}: the header row names {', '.join(twice)} more than once (nothing was loaded)"
        )
    required = [c for c in columns if c not in OPTIONAL_FIELDS]
    if missing:
        columns_word = "columns" if len(missing) > 1 else "column"
        raise IngestError(
            f"{path}: the header row has no {', '.join(missing)} {columns_word}; {kind} need "
            f"{', '.join(required)} (nothing was loaded)"
        )


def _check_compressed_whole(path: Path) -> None:
    """Refuse a compressed file whose data is corrupt anywhere (IngestError): read it whole once,
    before anything of the run loads. A file cut short passes: the load reads the records before
    the cut and then stops the run, as documented.

    why: gzip checks its CRC only at the end of a member, after every record of it has been read,
    so a file corrupted in transit loaded its rows, wrong prices among them, batch after batch,
    before the CRC error stopped the run saying that "the records before it were loaded". zstd
    frames with a checksum are checked at their end the same way. Decompressing once more costs
    far less than loading (hundreds of MB/s against a few MB/s of rows) and nothing per row.
    """
    compression = _COMPRESSION.get(path.suffix)
    if compression is None:
        return
    with path.open("rb") as raw, _decompressed(path, raw) as data:
        try:
            while data.read(1 << 20):
                pass
        except EOFError:  # cut short (truncation is told apart from corruption by its error)
            return
        except _UNREADABLE as exc:
            raise IngestError(
                f"{path}: the compressed data is corrupt: the data is not valid {compression} ({exc})"
                " (nothing was loaded)"
            ) from exc


class _NotText(ValueError):
    """A staged field of a JSON record that holds no text to stage (an array, object, boolean,
    NaN or Infinity); its message is the reject reason."""


def _text(value: Any, name: str) -> str | None:
    """The text a record's field ``name`` stages: a CSV field, a JSON string, a JSON number's
    text (read with parse_int and parse_float=str), a number a caller passed (int, Decimal, a
    finite float), or None; raises _NotText for any other value (an array, object, boolean, NaN
    or Infinity).

    why: the str() of anything else was staged, and a trade id ["a"] was stored as "['a']", true
    as "true", NaN (not JSON, but read by json) as "nan". Checked here, where each staged field is
    read anyway, the common path costs nothing more, and fields that are not staged (Binance's
    isBuyerMaker: true) may hold anything.
    """
    if value is None or isinstance(value, str):
        return value
    # why numbers too: callers other than the file readers (the demo day) pass Decimal and int
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    shown = json.dumps(value, default=str)
    raise _NotText(f"{name} is not a string or number: {shown if len(shown) <= 40 else shown[:40] + '…'}")


class Loader:
    """Stages batches of one kind of market data and loads them through SQL."""

    def __init__(self, conn: psycopg.Connection[Any], kind: str, *, strict: bool) -> None:
        if kind not in KINDS:
            raise IngestError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.conn = conn
        self.kind = kind
        self.strict = strict
        self.load = sql.SQL("select * from market.{}(p_strict => %s)").format(
            sql.Identifier(f"load_staged_{kind}")
        )

    def staged_columns(self) -> list[str]:
        """The fields of this kind, line_no first (market.stage_rows: in the caller's transaction,
        whose staging table it creates or empties)."""
        columns: list[str] = self.conn.execute("select market.stage_rows(%s)", [self.kind]).fetchone()[0]  # type: ignore[index]
        return columns

    def load_batch(self, batch: list[tuple[int, dict[str, Any]]]) -> tuple[int, int, list[tuple[int, str]]]:
        """Stage and load one batch (in the caller's transaction): loaded, duplicates, rejects."""
        columns = self.staged_columns()
        copy = sql.SQL("copy {} ({}) from stdin").format(
            sql.Identifier("pg_temp", f"staged_{self.kind}"), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        not_text: list[tuple[int, str]] = []
        with self.conn.cursor() as cur:
            with cur.copy(copy) as writer:
                for line_no, record in batch:
                    try:  # the row is built whole before it is written: a rejected one writes nothing
                        writer.write_row([line_no, *[_text(record.get(c), c) for c in columns[1:]]])
                    except _NotText as exc:
                        not_text.append((line_no, str(exc)))
            loaded, duplicates, _, rejects = cur.execute(self.load, [self.strict]).fetchone()  # type: ignore[misc]
        return loaded, duplicates, sorted(not_text + [(r["line"], r["reason"]) for r in rejects])


def _rejects_path(path: Path) -> Path:
    return path.with_name(path.name + ".rejects.csv")


def _clear_rejects(path: Path) -> None:
    """Remove FILE.rejects.csv of an earlier run, making sure this run could write it (IngestError)."""
    # why: the rejects file of an earlier run, left next to a file that now loads clean, told the
    # operator that rows of this run were rejected. why written once first: a rejects file that
    # cannot be written (a directory of that name, a read-only directory) failed with a traceback
    # after the rows had loaded, and the reasons of the rejected rows were lost
    target = _rejects_path(path)
    try:
        target.open("w").close()
        target.unlink()
    except OSError as exc:
        raise IngestError(
            f"{path}: cannot write its rejects file {target}: {exc.strerror or exc}; nothing was loaded"
        ) from None


def _write_rejects(path: Path, rejects: list[tuple[int, str]]) -> Path:
    target = _rejects_path(path)
    with target.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "reason"])
        writer.writerows(sorted(rejects))
    return target


def ingest(
    conn: psycopg.Connection[Any],
    kind: str,
    paths: list[Path],
    *,
    strict: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Callable[[int], None] = lambda nbytes: None,
) -> Summary:
    """Load the files into market.<kind>; rejects of FILE go to FILE.rejects.csv (line, reason),
    which replaces the one of an earlier run (a file with no reject is left without one).

    ``conn`` must be in autocommit mode. Without ``strict`` each batch of ``batch_rows`` rows is
    one transaction, and a run that fails part-way (the connection lost) still writes the rejects
    of the batches it committed; with ``strict`` the run is one transaction, rolled back if any
    row is rejected. A batch (with ``strict``, the run) that PostgreSQL aborts to break a deadlock
    with another load is loaded again, with a warning logged, up to DEADLOCK_ATTEMPTS times in all.
    """
    # why: the staging table is a temporary one (pg_temp), made on the server connection a pooler
    # in transaction pooling lent, and missing from the next transaction's: a batch's COPY failed
    # on a table that "does not exist", or loaded into another client's
    why = pooler.pooled_refusal(conn, "spreadedge ingest", "one session for its temporary staging table")
    if why is not None:
        raise IngestError(f"{why} (nothing was loaded)", hint=pooler.SESSION_HINT)
    loader = Loader(conn, kind, strict=strict)
    for path in paths:  # every name checked first
        file_format(path)
    try:
        columns = loader.staged_columns()[1:]
    except psycopg.errors.DiskFull as exc:  # the staging table cannot be made: nothing loads
        raise IngestError(
            f"the database server's disk is full ({_primary(exc)}) (nothing was loaded)", hint=DISK_FULL_HINT
        ) from exc
    given: dict[tuple[int, int], Path] = {}
    for path in paths:  # and the start of every file (a CSV file's header), before anything loads
        check_file(path, kind, columns)
        # why: a file given twice (a glob and its name, a link) was loaded twice: its rows counted
        # again as duplicates, its rejects twice in the summary and once in its rejects file
        stat = path.stat()
        first = given.get((stat.st_dev, stat.st_ino))
        if first is not None:
            raise IngestError(f"{path}: the same file as {first} is given twice (nothing was loaded)")
        given[stat.st_dev, stat.st_ino] = path
    for path in paths:  # and that its rejects can be written
        _clear_rejects(path)
    summary = Summary()
    started = time.monotonic()
    if strict:
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            summary = Summary()
            try:
                with conn.transaction():
                    _ingest_files(loader, paths, columns, batch_rows, progress, summary)
                    if summary.rejected:
                        summary.loaded = summary.duplicates = 0
                        raise psycopg.Rollback()
                break
            except psycopg.errors.DeadlockDetected as exc:
                # why the whole run: its batches are savepoints of one transaction, whose earlier
                # batches hold the rows the other load waits for; the run is rolled back whole, so
                # it is safe to load again from the start (see _flush)
                if attempt == DEADLOCK_ATTEMPTS:
                    raise
                log.warning(
                    "ingest %s --strict: deadlock with another load, loading again: %s",
                    kind,
                    _first_line(exc),
                )
    else:
        _ingest_files(loader, paths, columns, batch_rows, progress, summary)
    summary.seconds = time.monotonic() - started
    return summary


def _first_line(exc: BaseException) -> str:
    return str(exc).partition("\n")[0]


def _primary(exc: psycopg.Error) -> str:
    """The server's message of ``exc``, without its detail, hint and context."""
    return exc.diag.message_primary or _first_line(exc)


def _ingest_files(
    loader: Loader,
    paths: list[Path],
    columns: list[str],
    batch_rows: int,
    progress: Callable[[int], None],
    summary: Summary,
) -> None:
    for path in paths:
        rejects: list[tuple[int, str]] = []  # of the records up to the last batch loaded
        pending: list[tuple[int, str]] = []  # of the records read since, rejected as they were read
        batch: list[tuple[int, dict[str, Any]]] = []
        unreadable: IngestError | None = None
        full: psycopg.errors.DiskFull | None = None
        finished = False
        try:
            try:
                for line_no, record, problem in read_rows(path, progress, columns):
                    if record is None:
                        pending.append((line_no, problem or "unreadable"))
                        continue
                    batch.append((line_no, record))
                    if len(batch) >= batch_rows:
                        _flush(loader, batch, pending, rejects, summary)
            except IngestError as exc:  # compressed data cut short or not valid: the records before it load
                unreadable = exc
            _flush(loader, batch, pending, rejects, summary)
            finished = True
        except psycopg.errors.DiskFull as exc:
            full = exc  # the batch failed whole; said once the rejects of those before are written
        finally:
            # why finally: a run that failed part-way (the connection lost, a statement killed)
            # wrote no rejects file, though its committed batches had rejects (and the file of an
            # earlier run was removed): the rejects of what was loaded must be written. Those of
            # the batch that failed are not: nothing of it was loaded. A strict run that failed
            # committed nothing, so none of its rejects stands
            if finished or not loader.strict:
                summary.rejected += len(rejects)
                if rejects:
                    summary.rejects_files.append(_write_rejects(path, rejects))
        if full is not None:
            raise _disk_full(path, full, batch, loader.strict, summary) from full
        if unreadable is not None:
            # why stop the run: a file cut short is a download or copy that failed, which the
            # operator must see (exit status 1), not a few rows among the rejects
            outcome = (
                "--strict: nothing was loaded"
                if loader.strict
                else "the records before it were loaded, nothing after it, nor any later file; this run "
                f"loaded {summary.loaded:,} rows, skipped {summary.duplicates:,} duplicates and "
                f"rejected {summary.rejected:,} rows"
            )
            raise IngestError(f"{unreadable} ({outcome})") from unreadable


def _disk_full(
    path: Path,
    exc: psycopg.errors.DiskFull,
    batch: list[tuple[int, dict[str, Any]]],
    strict: bool,
    summary: Summary,
) -> IngestError:
    """The error of a run whose batch ``batch`` of ``path`` the server could not write: its disk is
    full (53100). The batch was rolled back whole.

    why: the server's "could not extend file ...: No space left on device" alone ended the run, and
    the operator could not tell that the batches before it had loaded (their rejects in the rejects
    file) nor which lines had not, nor that the same command may simply be run again.
    """
    problem = f"{path}: the database server's disk is full ({_primary(exc)})"
    if strict:
        return IngestError(f"{problem} (--strict: nothing was loaded)", hint=DISK_FULL_HINT)
    lines = f"lines {batch[0][0]} to {batch[-1][0]}" if batch else "its last lines"
    return IngestError(
        f"{problem}: the batch of {lines} was not loaded, nor anything after it, nor any later file; "
        f"this run loaded {summary.loaded:,} rows, skipped {summary.duplicates:,} duplicates and "
        f"rejected {summary.rejected:,} rows",
        hint=DISK_FULL_HINT,
    )


def _flush(
    loader: Loader,
    batch: list[tuple[int, dict[str, Any]]],
    pending: list[tuple[int, str]],
    rejects: list[tuple[int, str]],
    summary: Summary,
) -> None:
    """Load one batch (if any) in its own transaction (a savepoint inside a strict run); once it
    has committed, its rejects and ``pending`` (the records rejected as read among it) join
    ``rejects``."""
    if batch:
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                with loader.conn.transaction():
                    loaded, duplicates, batch_rejects = loader.load_batch(batch)
                break
            except psycopg.errors.DeadlockDetected as exc:
                # why: each load takes its rows in key order, and within one batch two loads wait
                # for each other but never deadlock; a --strict run holds the rows of all its
                # batches to its end, so it and another load (one batch each of the instruments
                # of two of its batches) could: PostgreSQL aborted one and the batch's rows, valid
                # ones, were not loaded and the run stopped. The batch is one transaction, rolled
                # back whole: loading it again is safe, and it now waits for the other to commit.
                # Inside a --strict run (a savepoint) the rows of its earlier batches are still
                # held: the run is loaded again instead (see ingest)
                if loader.strict or attempt == DEADLOCK_ATTEMPTS:
                    raise
                log.warning(
                    "ingest %s: deadlock with another load, loading the batch of lines %s to %s again: %s",
                    loader.kind,
                    batch[0][0],
                    batch[-1][0],
                    _first_line(exc),
                )
        summary.loaded += loaded
        summary.duplicates += duplicates
        rejects.extend(batch_rejects)
        batch.clear()
    rejects.extend(pending)
    pending.clear()


def describe(summary: Summary, *, strict: bool) -> str:
    """The summary lines `spreadedge ingest` prints."""
    lines = [
        f"loaded {summary.loaded:,} rows, skipped {summary.duplicates:,} duplicates, "
        f"rejected {summary.rejected:,} rows in {summary.seconds:.1f} s "
        f"({summary.rows_per_second:,.0f} rows/s)"
    ]
    if strict and summary.rejected:
        lines.append("--strict: nothing was loaded because rows were rejected")
    lines.extend(f"rejects: {path}" for path in summary.rejects_files)
    return "\n".join(lines)
