"""Bytes to validated models and back; every failure has a bounded, named reason."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, TypeAdapter, ValidationError

from smsmon.contract.canonical import (
    CanonicalError,
    canonical_msisdn,
    canonical_port,
    canonical_signature,
)
from smsmon.contract.fastdecode import fast_event
from smsmon.contract.fastdecode import route_event as fast_route
from smsmon.contract.models import (
    Alert,
    ConsentRecord,
    DeadLetter,
    DlrEvent,
    GatewayEvent,
    MoEvent,
    MtEvent,
    PortRecord,
    SignatureRecord,
    latest_ts,
)

Event = MtEvent | MoEvent | DlrEvent
_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(GatewayEvent)
M = TypeVar("M", bound=BaseModel)

# Bytes of an invalid record's key and value kept in its dead letter (see dead_letter).
DEAD_LETTER_KEEP_BYTES = 64 * 1024

# Field names that may appear in `schema:<field>` reasons; anything else maps to `schema:value`
# so that the reason label stays bounded whatever the input.
_KNOWN_FIELDS = frozenset(
    set(MtEvent.model_fields)
    | set(MoEvent.model_fields)
    | set(DlrEvent.model_fields)
    | set(PortRecord.model_fields)
    | set(SignatureRecord.model_fields)
    | set(ConsentRecord.model_fields)
)


class DecodeError(ValueError):
    """An input record that cannot be used; `reason` is a bounded label, `error` says why."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(f"{reason}: {error}")
        self.reason = reason
        self.error = error


@dataclass(frozen=True, slots=True)
class DecodeContext:
    """What validation needs besides the bytes: timezone for naive ts, limits, clock."""

    tz: ZoneInfo
    max_event_bytes: int = 65_536
    max_text_chars: int = 4_000
    max_future_skew_seconds: float = 86_400.0
    now: dt.datetime | None = None
    # the last context built and when (monotonic seconds): see validation_context
    _memo: list[Any] = field(default_factory=lambda: [None, 0.0], compare=False, repr=False)

    def validation_context(self) -> dict[str, Any]:
        """The pydantic validation context: limits, timezone and the clock for the future-ts
        check. Without a fixed `now`, the clock is read at most once a second (building the
        context per record was a visible part of an audit): a ts is judged against a `now` up to
        a second old, i.e. the allowed skew is at most a second shorter. Validators only read
        the context, so one dict serves every record of that second."""
        memo = self._memo
        t = time.monotonic()
        ctx: dict[str, Any] | None = memo[0]
        if ctx is None or t - memo[1] >= 1.0:
            now = self.now or dt.datetime.now(dt.UTC)
            ctx = memo[0] = {
                "tz": self.tz,
                "max_text_chars": self.max_text_chars,
                "max_future_skew": self.max_future_skew_seconds,
                "now": now,
                "latest": latest_ts(now, self.max_future_skew_seconds),
            }
            memo[1] = t
        return ctx


def _reason_from(exc: ValidationError) -> DecodeError:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    etype = first["type"]
    if etype == "json_invalid":
        return DecodeError("json", f"invalid JSON: {first['msg']}")
    if etype in ("union_tag_not_found", "union_tag_invalid"):
        return DecodeError("schema:kind", "kind must be one of mt, mo, dlr")
    if etype in ("model_type", "model_attributes_type", "dict_type"):
        return DecodeError("schema:value", "value must be a JSON object")
    field = next(
        (str(p) for p in reversed(first["loc"]) if isinstance(p, str) and p in _KNOWN_FIELDS),
        "value",
    )
    return DecodeError(f"schema:{field}", f"{field}: {first['msg']}")


def _check_raw(value: bytes | None, ctx: DecodeContext) -> bytes:
    if value is None:
        raise DecodeError("schema:value", "null value (tombstone) where a record is required")
    if len(value) > ctx.max_event_bytes:
        raise DecodeError("too_large", f"{len(value)} bytes exceeds {ctx.max_event_bytes}")
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("encoding", f"not UTF-8 at byte {exc.start}") from None
    return value


def decode_event(
    value: bytes | None, key: bytes | None, ctx: DecodeContext, key_ms: str | None = None
) -> Event:
    """Decode a gateway event; the key, when present, must be the same msisdn. `key_ms` is
    `key_msisdn(key)` when the caller has it already (None: not known, or no msisdn)."""
    if value is not None and len(value) <= ctx.max_event_bytes:
        vctx = ctx.validation_context()
        event = fast_event(value, vctx, key_ms)
        if event is None:
            event = _validate_event(_check_raw(value, ctx), vctx)
    else:
        event = _validate_event(_check_raw(value, ctx), ctx.validation_context())
    if key is not None:
        if key_ms is None:
            key_ms = key_msisdn(key)
            if key_ms is None:
                raise DecodeError("schema:key", "key is not a msisdn")
        if key_ms != event.msisdn:
            raise DecodeError("schema:key", "key and value name different msisdns")
    return event


def key_msisdn(key: bytes) -> str | None:
    """The canonical msisdn a record's key names, or None if it names none."""
    try:
        return canonical_msisdn(key.decode("utf-8", errors="strict"))
    except (CanonicalError, UnicodeDecodeError):
        return None


def route_event(
    value: bytes | None, msisdn: str | None, ctx: DecodeContext
) -> tuple[str, int] | None:
    """(canonical msisdn, event time in epoch ms) of a gateway event, read without decoding
    it fully: `msisdn` when the caller has it from the record's key (the full decode at the
    record's home checks that the value names the same one), else the value's. None when
    that cannot be told cheaply, or for a record too large to forward: the caller decodes
    it fully (`decode_event`), and an invalid one is dead-lettered where it was read."""
    if value is None or len(value) > ctx.max_event_bytes:
        return None
    routed = fast_route(value, ctx.validation_context(), msisdn is None)
    if routed is None:
        return None
    found, ts_ms = routed
    return (msisdn or found or ""), ts_ms


def _validate_event(raw: bytes, vctx: dict[str, Any]) -> Event:
    """The contract's own decode of a gateway event (pydantic): the schema's source, and the
    answer whenever the fast path (fastdecode.py) cannot give one."""
    try:
        return _EVENT_ADAPTER.validate_json(raw, context=vctx)
    except ValidationError as exc:
        raise _reason_from(exc) from None


def decode_model(model: type[M], value: bytes | None, ctx: DecodeContext) -> M:
    """Decode a reference record of type `model`."""
    raw = _check_raw(value, ctx)
    try:
        return model.model_validate_json(raw, context=ctx.validation_context())
    except ValidationError as exc:
        raise _reason_from(exc) from None


def port_key(key: bytes | None) -> str:
    """Canonical port code from a `sms.ref.ports` key."""
    try:
        return canonical_port((key or b"").decode("utf-8"))
    except (CanonicalError, UnicodeDecodeError):
        raise DecodeError("schema:key", "port key is not a port code") from None


def signature_key(key: bytes | None) -> str:
    """Canonical signature from a `sms.ref.signatures` key."""
    try:
        sig = canonical_signature((key or b"").decode("utf-8"))
    except UnicodeDecodeError:
        raise DecodeError("schema:key", "signature key is not UTF-8") from None
    if sig is None:
        raise DecodeError("schema:key", "signature key is empty")
    return sig


def consent_key(key: bytes | None) -> tuple[str, str]:
    """(msisdn, enterprise) from a `sms.ref.consent` key `<msisdn>|<enterprise>`."""
    try:
        text = (key or b"").decode("utf-8")
        msisdn, _, enterprise = text.partition("|")
        if not enterprise:
            raise CanonicalError("missing enterprise")
        return canonical_msisdn(msisdn), enterprise
    except (CanonicalError, UnicodeDecodeError):
        raise DecodeError("schema:key", "consent key is not <msisdn>|<enterprise>") from None


def encode_alert(alert: Alert) -> bytes:
    """Alert JSON as published to the alerts topic."""
    return alert.model_dump_json(exclude_none=True).encode()


def dead_letter(
    *,
    reason: str,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    now: dt.datetime,
) -> DeadLetter:
    """Build a dead letter that keeps the original bytes (text if UTF-8, else base64).

    Key and value are kept up to DEAD_LETTER_KEEP_BYTES each: a record just under the broker's
    size limit would otherwise give a dead letter over it (base64 grows by a third, JSON
    escapes up to six times), which the producer refuses. A longer original is cut, and its
    size and SHA-256 are recorded so it can be matched to the source record.
    """
    truncated = False

    def split(b: bytes | None) -> tuple[str | None, str | None]:
        nonlocal truncated
        if b is None:
            return None, None
        if len(b) > DEAD_LETTER_KEEP_BYTES:
            truncated = True
            b = b[:DEAD_LETTER_KEEP_BYTES]
            # Do not let the cut split a UTF-8 sequence of an otherwise valid text.
            for cut in range(4):
                try:
                    return b[: len(b) - cut].decode("utf-8"), None
                except UnicodeDecodeError:
                    continue
            return None, base64.b64encode(b).decode("ascii")
        try:
            return b.decode("utf-8"), None
        except UnicodeDecodeError:
            return None, base64.b64encode(b).decode("ascii")

    key_text, key_b64 = split(key)
    value_text, value_b64 = split(value)
    whole = value if value is not None and len(value) > DEAD_LETTER_KEEP_BYTES else key
    cut = truncated and whole is not None
    return DeadLetter(
        truncated=True if cut else None,
        original_size=len(whole) if cut and whole is not None else None,
        original_sha256=hashlib.sha256(whole).hexdigest() if cut and whole is not None else None,
        reason=reason,
        error=error[:500],
        source_topic=topic,
        partition=partition,
        offset=offset,
        key_text=key_text,
        key_base64=key_b64,
        value_text=value_text,
        value_base64=value_b64,
        received_at=now,
    )
