"""The evidence pack: a filtered set of alerts as CSV and JSONL plus a manifest, in one zip."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import tempfile
import zipfile
from collections.abc import Iterable
from typing import IO, Any

from smsmon.console.filters import AlertFilter
from smsmon.store.schema import Alert

COLUMNS = (
    "alert_id", "rule", "severity", "ts", "detected_at", "event_id", "gateway", "account",
    "port", "signature", "enterprise", "category", "msisdn_hash", "msisdn_masked", "detail",
    "subject_type", "subject", "window_start", "window_end", "observed", "threshold",
    "baseline", "schema_version", "case_status", "stored_at", "src_partition", "src_offset",
)  # fmt: skip
"""CSV columns: the alert's own fields and where the store read it; never a raw number."""


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return value


def _csv_safe(value: Any) -> Any:
    # A cell starting with = + - @ is run as a formula by spreadsheet programs (CSV injection);
    # a leading apostrophe keeps the text as text. Numbers are left alone.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class _Hashing(io.RawIOBase):
    """Counts and hashes what is written through it into a temporary file."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


def build_pack(
    alerts: Iterable[Alert], flt: AlertFilter, actor: str, limit: int, backend: str
) -> tuple[IO[bytes], dict[str, Any]]:
    """Write the zip to a temporary file (rewound) and return it with its manifest."""
    with tempfile.TemporaryFile() as csv_tmp, tempfile.TemporaryFile() as jsonl_tmp:
        csv_raw, jsonl_raw = _Hashing(csv_tmp), _Hashing(jsonl_tmp)
        csv_text = io.TextIOWrapper(io.BufferedWriter(csv_raw), encoding="utf-8", newline="")
        writer = csv.writer(csv_text)
        writer.writerow(COLUMNS)
        count = 0
        for a in alerts:
            writer.writerow([_csv_safe(_cell(getattr(a, c))) for c in COLUMNS])
            record = {c: _cell(getattr(a, c)) for c in COLUMNS}
            try:
                record["payload"] = json.loads(a.payload)
            except ValueError:
                record["payload"] = None
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
            jsonl_raw.write(line.encode())
            count += 1
        csv_text.flush()
        manifest: dict[str, Any] = {
            "kind": "smsmon-evidence-pack",
            "version": 1,
            "generated_at": _cell(dt.datetime.now(dt.UTC)),
            "generated_by": actor,
            "database": backend,
            "filter": flt.as_params(),
            "order": "ts ascending, then alert_id",
            "row_count": count,
            "truncated": count >= limit,
            "row_limit": limit,
            "files": {
                "alerts.csv": {"sha256": csv_raw.sha.hexdigest(), "bytes": csv_raw.size},
                "alerts.jsonl": {"sha256": jsonl_raw.sha.hexdigest(), "bytes": jsonl_raw.size},
            },
            "privacy": "subscriber numbers appear only as keyed hash and masked form",
        }
        # The caller streams the zip to the client and closes it.
        out = tempfile.TemporaryFile()  # noqa: SIM115
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, tmp in (("alerts.csv", csv_tmp), ("alerts.jsonl", jsonl_tmp)):
                tmp.seek(0)
                with z.open(name, "w") as dst:
                    while chunk := tmp.read(1 << 20):
                        dst.write(chunk)
            z.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
        csv_text.detach()
    out.seek(0)
    return out, manifest
