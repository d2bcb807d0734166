"""Kafka records to table rows: decoded with the contract's models, msisdns hashed, or rejected.

Nothing here touches the database or Kafka; `writer` stores what these functions return.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ConfigDict, ValidationError
from sqlalchemy import String

from smsmon.contract.canonical import MsisdnHasher, mask_msisdn
from smsmon.contract.codec import (
    DecodeContext,
    DecodeError,
    consent_key,
    decode_model,
    port_key,
    signature_key,
)
from smsmon.contract.models import Alert, ConsentRecord, PortRecord, SignatureRecord
from smsmon.store import schema

Row = dict[str, Any]


class StoredAlert(Alert):
    """The contract's Alert, ignoring fields a newer smsmon may add (the contract is
    additive within a major version; the whole JSON is kept in `payload` anyway)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


_ALERT_FIELDS: Final = frozenset(Alert.model_fields)
_TIMES: Final = ("ts", "detected_at", "window_start", "window_end")


def _lengths(table: Any) -> dict[str, int]:
    return {
        c.name: c.type.length
        for c in table.columns
        if isinstance(c.type, String) and c.type.length is not None
    }


_ALERT_LENGTHS: Final = _lengths(schema.Alert.__table__)
_PORT_KEY_MAX: Final = _lengths(schema.Port.__table__)["key"]
_SIGNATURE_KEY_MAX: Final = _lengths(schema.Signature.__table__)["key"]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record was read, and the bytes (the value only to hash and size it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """A record that cannot be stored; `reason` is a bounded label, `error` names no content."""

    reason: str
    error: str

    def row(self, src: Source, at: dt.datetime) -> Row:
        """The `store_rejects` row: position, reason, and the value's size and SHA-256."""
        value = src.value
        return {
            "topic": src.topic,
            "partition": src.partition,
            "offset": src.offset,
            "reason": self.reason,
            "error": self.error[:500],
            "value_size": None if value is None else len(value),
            "value_sha256": None if value is None else hashlib.sha256(value).hexdigest(),
            "at": at,
        }


def _alert_reason(exc: ValidationError) -> Reject:
    first = exc.errors(include_url=False, include_input=False)[0]
    if first["type"] == "json_invalid":
        return Reject("json", f"invalid JSON: {first['msg']}")
    if first["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return Reject("schema:value", "value must be a JSON object")
    field = next(
        (str(p) for p in first["loc"] if isinstance(p, str) and p in _ALERT_FIELDS), "value"
    )
    return Reject(f"schema:{field}", f"{field}: {first['msg']}")


def _record_time(src: Source, at: dt.datetime) -> dt.datetime:
    if src.timestamp_ms is None or src.timestamp_ms < 0:
        return at
    return dt.datetime.fromtimestamp(src.timestamp_ms / 1000, tz=dt.UTC)


def _text(value: bytes | None, limit: int) -> str | Reject:
    if value is None:
        return Reject("schema:value", "null value where a record is required")
    if len(value) > limit:
        return Reject("too_large", f"{len(value)} bytes exceeds {limit}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Reject("encoding", f"not UTF-8 at byte {exc.start}")
    if "\x00" in text:
        # PostgreSQL text cannot hold NUL; refuse it on SQLite too, so both store the same.
        return Reject("schema:value", "NUL character in the record")
    return text


def alert_row(src: Source, at: dt.datetime, max_bytes: int) -> Row | Reject:
    """An `alerts` row for an `sms.alerts` record."""
    text = _text(src.value, max_bytes)
    if isinstance(text, Reject):
        return text
    try:
        alert = StoredAlert.model_validate_json(text)
    except ValidationError as exc:
        return _alert_reason(exc)
    if not alert.alert_id:
        return Reject("schema:alert_id", "alert_id: empty")
    row: Row = alert.model_dump(mode="python")
    for name in _TIMES:
        ts = row[name]
        if ts is not None and ts.utcoffset() is None:
            return Reject(f"schema:{name}", f"{name}: timestamp without timezone offset")
    for name, value in row.items():
        if isinstance(value, str):
            limit = _ALERT_LENGTHS.get(name)
            if limit is not None and len(value) > limit:
                return Reject(f"schema:{name}", f"{name}: longer than {limit} characters")
            if "\x00" in value:
                return Reject(f"schema:{name}", f"{name}: NUL character")
    for name in ("observed", "threshold", "baseline"):
        number = row[name]
        if number is not None and not math.isfinite(number):
            return Reject(f"schema:{name}", f"{name}: not a finite number")
    for name in ("severity", "category"):
        if row[name] is not None:
            row[name] = str(row[name])
    row.update(
        payload=text,
        src_partition=src.partition,
        src_offset=src.offset,
        stored_at=at,
        case_status="open",
    )
    return row


def consent_row(
    src: Source, at: dt.datetime, ctx: DecodeContext, hasher: MsisdnHasher
) -> Row | Reject:
    """A `consent_events` row: the msisdn only as its keyed hash and masked form."""
    try:
        if src.value is None:
            msisdn, enterprise = consent_key(src.key)
            status, ts, source = schema.CONSENT_DELETED, _record_time(src, at), None
            method = proof_ref = None
        else:
            record = decode_model(ConsentRecord, src.value, ctx)
            msisdn, enterprise = record.msisdn, record.enterprise
            status, ts, source = str(record.status), record.ts, record.source
            method = None if record.method is None else str(record.method)
            proof_ref = record.proof_ref
    except DecodeError as exc:
        return Reject(exc.reason, exc.error)
    if "\x00" in enterprise or any(v is not None and "\x00" in v for v in (source, proof_ref)):
        return Reject("schema:enterprise", "NUL character")
    if len(enterprise) > 200:
        return Reject("schema:enterprise", "enterprise: longer than 200 characters")
    return {
        "msisdn_hash": hasher(msisdn),
        "msisdn_masked": mask_msisdn(msisdn),
        "enterprise": enterprise,
        "status": status,
        "ts": ts,
        "source": source,
        "method": method,
        "proof_ref": proof_ref,
        "published_by_smsmon": source == "mo",
        "src_partition": src.partition,
        "src_offset": src.offset,
    }


def port_row(src: Source, at: dt.datetime, ctx: DecodeContext) -> tuple[str, Row | None] | Reject:
    """(port code, `ports` row) for a port record, or (port code, None) for a deletion."""
    try:
        key = port_key(src.key) if src.key is not None or src.value is None else None
        if src.value is None:
            assert key is not None
            return key, None
        record = decode_model(PortRecord, src.value, ctx)
    except DecodeError as exc:
        return Reject(exc.reason, exc.error)
    if key is not None and key != record.port:
        return Reject("schema:key", "key and value name different ports")
    if len(record.port) > _PORT_KEY_MAX or "\x00" in record.enterprise:
        return Reject("schema:port", "port code too long or enterprise with NUL")
    return record.port, {
        "key": record.port,
        "enterprise": record.enterprise,
        "status": str(record.status),
        "record": record.model_dump_json(),
        "updated_at": _record_time(src, at),
    }


def signature_row(
    src: Source, at: dt.datetime, ctx: DecodeContext
) -> tuple[str, Row | None] | Reject:
    """(normalised signature, `signatures` row) for a signature record, or (sig, None)."""
    try:
        key = signature_key(src.key) if src.key is not None or src.value is None else None
        if src.value is None:
            assert key is not None
            return key, None
        record = decode_model(SignatureRecord, src.value, ctx)
        sig = signature_key(record.signature.encode())
    except DecodeError as exc:
        return Reject(exc.reason, exc.error)
    if key is not None and key != sig:
        return Reject("schema:key", "key and value name different signatures")
    if len(sig) > _SIGNATURE_KEY_MAX or "\x00" in sig or "\x00" in record.enterprise:
        return Reject("schema:signature", "signature too long or with NUL")
    return sig, {
        "key": sig,
        "enterprise": record.enterprise,
        "status": str(record.status),
        "record": record.model_dump_json(),
        "updated_at": _record_time(src, at),
    }
