"""The audit's inputs: which files, how their lines become records, and fast sort keys.

A `Reader` turns one JSONL or CSV file, plain or gzip, into records as JSON bytes (CSV rows
are converted to the contract's JSON), so that every record goes through the worker's codec
exactly as it would off a topic. `fast_ts_us` reads a record's `ts` without decoding it (the
sort key of pass 1); `decoder` decodes a record of one input kind, archived consent
tombstones included.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from smsmon.contract.codec import (
    DecodeContext,
    DecodeError,
    consent_key,
    decode_event,
    decode_model,
)
from smsmon.contract.models import Complaint, ConsentRecord
from smsmon.contract.times import from_ms, naive_to_us, to_us

CONSENT, EVENTS, COMPLAINTS = 0, 1, 2  # also the tie-break rank at equal ts
KIND_NAMES = {CONSENT: "consent", EVENTS: "events", COMPLAINTS: "complaints"}
PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.csv", "*.csv.gz")
LIST_FIELDS = frozenset({"accounts", "categories", "ports"})
INT_FIELDS = frozenset({"segments", "max_per_minute", "schema_version"})
BOOL_FIELDS = frozenset({"shared"})
# `"ts": <string or integer>` as a key of the top-level object. A `"` inside a JSON string is
# always escaped, so `{` or `,` followed by `"ts"` cannot match inside a string value.
_TS_RE = re.compile(rb'[{,]\s*"ts"\s*:\s*(?:"([^"\\]{1,40})"|(\d{1,20}))\s*[,}]')

Item = tuple[int, bytes | None, Any, tuple[str, str] | None]  # line, raw JSON, ts hint, error


class AuditError(Exception):
    """A problem with the audit's inputs that stops it (the message says what to fix)."""


@dataclass(slots=True)
class Tombstone:
    """An archived null consent record (`{"_key": ..., "_tombstone": true, "_timestamp": ms}`)."""

    msisdn: str
    enterprise: str
    ts_us: int


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Files named, and every *.jsonl[.gz] / *.csv[.gz] of a directory (sorted by name)."""
    out: list[Path] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted({f for pat in PATTERNS for f in p.glob(pat) if f.is_file()})
        elif p.is_file():
            found = [p]
        else:
            raise AuditError(f"input not found: {p}")
        for f in found:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append(f)
    return out


def is_csv(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


class Reader:
    """Records of one JSONL or CSV file, plain or gzip (detected by content), as JSON bytes.

    Yields `(line, raw, ts_hint, error)`: `line` is the 1-based line where the record starts,
    `raw` the record as JSON (CSV rows are converted), `ts_hint` the CSV `ts` cell, `error` a
    `(reason, message)` for a line that cannot even be read as a record. Blank lines are
    not records. A truncated or corrupt gzip stream ends the file with one `gzip` error.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw: IO[bytes] | None = None

    def tell(self) -> int:
        """Bytes of the file consumed so far (compressed bytes for gzip)."""
        try:
            return self._raw.tell() if self._raw is not None else 0
        except (OSError, ValueError):
            return 0

    def __iter__(self) -> Iterator[Item]:
        raw = self._raw = self.path.open("rb")
        try:
            magic = raw.read(2)
            raw.seek(0)
            stream: IO[bytes] = raw
            if magic == b"\x1f\x8b":
                stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
            if is_csv(self.path):
                yield from self._csv(stream)
            else:
                # GzipFile.readline is its buffered reader's readline behind a Python-level
                # closed check: iterate that reader itself (the same lines, the same errors).
                yield from self._jsonl(getattr(stream, "_buffer", stream))
        finally:
            raw.close()

    @staticmethod
    def _jsonl(stream: IO[bytes]) -> Iterator[Item]:
        lineno = 0
        try:
            for lineno, line in enumerate(stream, 1):
                line = line.rstrip(b"\r\n")
                if not line or line.isspace():
                    continue
                yield lineno, line, None, None
        except (EOFError, OSError, zlib.error) as exc:
            yield (
                lineno + 1,
                None,
                None,
                ("gzip", f"truncated or corrupt gzip data ({type(exc).__name__})"),
            )

    @staticmethod
    def _csv(stream: IO[bytes]) -> Iterator[Item]:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        header: list[str] | None = None
        start = 1
        try:
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield start, None, None, ("csv", str(exc)[:200])
                    start = reader.line_num + 1
                    continue
                line, start = start, reader.line_num + 1
                if header is None:
                    header = [h.strip().lower() for h in row]
                    continue
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) > len(header):
                    msg = f"{len(row)} fields but the header has {len(header)}"
                    yield line, None, None, ("csv", msg)
                    continue
                rec = csv_record(header, row)
                try:
                    raw = json.dumps(rec, ensure_ascii=False).encode("utf-8")
                except UnicodeEncodeError:
                    yield line, None, None, ("encoding", "not UTF-8")
                    continue
                yield line, raw, rec.get("ts"), None
        except (EOFError, OSError, zlib.error) as exc:
            yield (
                start,
                None,
                None,
                ("gzip", f"truncated or corrupt gzip data ({type(exc).__name__})"),
            )


def csv_record(header: Sequence[str], row: Sequence[str]) -> dict[str, Any]:
    """A CSV row as the JSON record of the contract: empty cells are absent, list fields are
    `;`-separated, `ts` of digits only is epoch milliseconds, ints and booleans converted."""
    rec: dict[str, Any] = {}
    for name, cell in zip(header, row, strict=False):
        if not name or cell == "":
            continue
        value: Any = cell
        if name in LIST_FIELDS:
            value = [v.strip() for v in cell.split(";") if v.strip()]
        elif name in INT_FIELDS or (name == "ts" and cell.strip().isdigit()):
            s = cell.strip()
            value = int(s) if s.isdigit() else cell
        elif name in BOOL_FIELDS:
            low = cell.strip().lower()
            value = {"true": True, "1": True, "yes": True, "false": False, "0": False}.get(
                low, cell
            )
        rec[name] = value
    return rec


def fast_ts_us(raw: bytes, hint: Any, tz: ZoneInfo) -> int | None:
    """Sort key of a record: its `ts` in epoch microseconds, read without decoding the
    record (None when that is not simple: the caller then decodes it properly)."""
    value: Any = hint
    if hint is None:
        m = _TS_RE.search(raw)
        # A second `"ts"` key makes the record unusual (decoded instead); with one `"ts"`
        # in the whole line there is no second key to look for.
        if m is None or (raw.count(b'"ts"') > 1 and _TS_RE.search(raw, m.end() - 1) is not None):
            return None
        text, digits = m.group(1), m.group(2)
        if digits is not None:
            value = int(digits)
        else:
            try:
                value = text.decode("ascii")
            except UnicodeDecodeError:
                return None
    try:
        if isinstance(value, int):
            # below 10^12 is not epoch milliseconds (the codec says why); beyond the years
            # a datetime holds, the codec reports it too
            return to_us(from_ms(value)) if value >= 10**12 else None
        if not isinstance(value, str):
            return None
        ts = dt.datetime.fromisoformat(value)
        if ts.tzinfo is None:
            # local wall time, fold 0, as the codec reads it
            return naive_to_us(ts, tz)
        return to_us(ts)
    except (ValueError, OverflowError):
        return None


# -- archived consent tombstones ----------------------------------------------------------


def tombstone_key(raw: bytes) -> str | None:
    """The `_key` of an archived tombstone line (`_tombstone: true`), else None."""
    if not (raw.startswith(b'{"_key"') or b'"_tombstone"' in raw):
        return None
    try:
        d = json.loads(raw)
    except ValueError:
        return None
    if isinstance(d, dict) and d.get("_tombstone") is True and isinstance(d.get("_key"), str):
        return str(d["_key"])
    return None


def consent_tombstone(raw: bytes) -> Tombstone | None:
    """An archived consent tombstone, applied at its Kafka timestamp (0 when it has none)."""
    key = tombstone_key(raw)
    if key is None:
        return None
    msisdn, enterprise = consent_key(key.encode())
    d = json.loads(raw)
    ts_ms = d.get("_timestamp")
    ts_us = 0
    if isinstance(ts_ms, int):
        try:
            ts_us = to_us(from_ms(ts_ms))
        except OverflowError:
            raise DecodeError("schema:_timestamp", "Kafka timestamp out of range") from None
    return Tombstone(msisdn, enterprise, ts_us)


def decoder(kind: int, ctx: DecodeContext) -> Callable[[bytes], Any]:
    """The decoder of one input kind: the worker's codec (consent: tombstones too)."""
    if kind == EVENTS:
        return lambda raw: decode_event(raw, None, ctx)
    if kind == COMPLAINTS:
        return lambda raw: decode_model(Complaint, raw, ctx)

    def consent(raw: bytes) -> Any:
        if raw.startswith(b'{"_key"') or b'"_tombstone"' in raw:
            tomb = consent_tombstone(raw)
            if tomb is not None:
                return tomb
        return decode_model(ConsentRecord, raw, ctx)

    return consent
