"""Pydantic models of everything that crosses Kafka: the wire contract (docs/contract.md)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from smsmon.contract.canonical import CanonicalError, canonical_msisdn, canonical_port

SCHEMA_VERSION = 1
"""Major version of the wire contract; additive changes keep it."""

_EPOCH_MS_MIN = 10**12
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_DEFAULT_TZ = ZoneInfo("Asia/Shanghai")


class Category(StrEnum):
    """Declared (or judged) message categories."""

    MARKETING = "marketing"
    NOTIFICATION = "notification"
    VERIFICATION = "verification"


class Severity(StrEnum):
    """Alert severities, most urgent first."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"


def parse_ts(value: object, info: ValidationInfo) -> dt.datetime:
    """Parse the contract's `ts`: ISO-8601 (offset or naive in the configured tz) or epoch ms."""
    ctx = info.context or {}
    return check_ts(
        value,
        ctx.get("tz", _DEFAULT_TZ),
        ctx.get("now"),
        ctx.get("max_future_skew", 86_400.0),
        ctx.get("latest"),
    )


def latest_ts(now: dt.datetime, skew: float) -> dt.datetime:
    """The latest acceptable `ts` at `now` with the allowed clock skew."""
    try:
        return now + _seconds(skew)
    except OverflowError:
        return dt.datetime.max.replace(tzinfo=dt.UTC)


def check_ts(
    value: object,
    tz: ZoneInfo,
    now: dt.datetime | None,
    skew: float,
    latest: dt.datetime | None = None,
) -> dt.datetime:
    """`parse_ts` with its context spelled out. `latest` is `latest_ts(now, skew)` when the
    caller computed it once for many records (the decode context does)."""
    if type(value) is str:  # the common case first (a str is neither bool nor int)
        ts = _iso_ts(value, tz)
        # A local time in 2001 or later is after 2000-01-01 UTC whatever its offset (< 24 h).
        early = ts.year <= 2000 and ts < _EARLIEST
    else:
        if isinstance(value, bool):
            raise ValueError("ts must be ISO-8601 text or integer epoch milliseconds")
        if isinstance(value, int):
            if value < _EPOCH_MS_MIN:
                raise ValueError("integer ts must be epoch milliseconds (>= 10^12)")
            try:
                ts = dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
            except (OverflowError, OSError, ValueError) as exc:
                raise ValueError("ts epoch milliseconds out of range") from exc
        elif isinstance(value, str):
            ts = _iso_ts(value, tz)
        elif isinstance(value, dt.datetime) and value.tzinfo is not None:
            ts = value
        else:
            raise ValueError("ts must be ISO-8601 text or integer epoch milliseconds")
        early = ts < _EARLIEST
    if early:
        raise ValueError("ts is before 2000-01-01")
    if latest is None and now is not None:
        latest = latest_ts(now, skew)
    if latest is not None and ts > latest:
        raise ValueError("ts is in the future beyond the allowed clock skew")
    return ts


def _iso_ts(value: str, tz: ZoneInfo) -> dt.datetime:
    if len(value) > 40:
        raise ValueError("ts text too long for ISO-8601")
    try:
        ts = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError("ts is not ISO-8601") from exc
    if ts.tzinfo is None:
        # = ts.replace(tzinfo=tz) (fold 0 either way), at a fifth of the cost in CPython 3.11
        ts = _combine(ts.date(), ts.time(), tz)
    return ts


_combine = dt.datetime.combine


_SKEWS: dict[float, dt.timedelta] = {}


def _seconds(skew: float) -> dt.timedelta:
    """timedelta(seconds=skew), remembered for the few skews a process uses."""
    delta = _SKEWS.get(skew)
    if delta is None:
        delta = dt.timedelta(seconds=skew)
        if len(_SKEWS) < 16:
            _SKEWS[skew] = delta
    return delta


def _msisdn(value: object) -> str:
    try:
        return canonical_msisdn(value)
    except CanonicalError as exc:
        raise ValueError(str(exc)) from exc


def _port(value: object) -> str:
    try:
        return canonical_port(value)
    except CanonicalError as exc:
        raise ValueError(str(exc)) from exc


Msisdn = Annotated[str, BeforeValidator(_msisdn)]
PortCode = Annotated[str, BeforeValidator(_port)]
Timestamp = Annotated[dt.datetime, BeforeValidator(parse_ts)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=False, str_max_length=100_000)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL character in text")
    return value


class _EventBase(_Wire):
    schema_version: int = SCHEMA_VERSION
    event_id: Name
    ts: Timestamp
    gateway: Name
    port: PortCode
    msisdn: Msisdn

    @field_validator("event_id", "gateway", mode="after")
    @classmethod
    def _clean_names(cls, value: str) -> str:
        return _no_nul(value)


def _check_text(value: str, info: ValidationInfo) -> str:
    limit: int = (info.context or {}).get("max_text_chars", 4_000)
    if len(value) > limit:
        raise ValueError(f"text longer than {limit} characters")
    return _no_nul(value)


class MtEvent(_EventBase):
    """A message an enterprise submitted to a subscriber."""

    kind: Literal["mt"]
    account: Name
    category: Category
    text: str
    signature: str | None = Field(default=None, max_length=200)
    segments: int = Field(default=1, ge=1, le=255)
    source_ip: str | None = Field(default=None, max_length=64)

    _text = field_validator("text", mode="after")(_check_text)


class MoEvent(_EventBase):
    """A subscriber's reply (unsubscribe keywords live here)."""

    kind: Literal["mo"]
    text: str

    _text = field_validator("text", mode="after")(_check_text)


class DlrEvent(_EventBase):
    """A delivery report."""

    kind: Literal["dlr"]
    status: Name


GatewayEvent = Annotated[MtEvent | MoEvent | DlrEvent, Field(discriminator="kind")]


class PortStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class SignatureStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    REVOKED = "revoked"


class ConsentMethod(StrEnum):
    """How a consent was given. `registration_default` and `implied` do not count as consent
    for marketing (the 2020 draft rules: no explicit consent counts as refusal)."""

    SMS_REPLY = "sms_reply"
    WEB_FORM = "web_form"
    APP = "app"
    PAPER = "paper"
    VOICE = "voice"
    REGISTRATION_DEFAULT = "registration_default"
    IMPLIED = "implied"


#: Methods that do not make marketing lawful: marketing on their strength is `consent.implicit`.
IMPLICIT_CONSENT_METHODS = frozenset({ConsentMethod.REGISTRATION_DEFAULT, ConsentMethod.IMPLIED})


class PortRecord(_Wire):
    """A registered SMS port (code number) and what it may carry."""

    port: PortCode
    enterprise: Name
    accounts: list[Name] = Field(default_factory=list, max_length=10_000)
    categories: list[Category] = Field(default_factory=list)
    status: PortStatus
    shared: bool = False
    max_per_minute: int | None = Field(default=None, ge=1)


class SignatureRecord(_Wire):
    """A registered signature (签名) and the ports it may use (empty = any)."""

    signature: Name
    enterprise: Name
    ports: list[PortCode] = Field(default_factory=list, max_length=10_000)
    status: SignatureStatus


class ConsentRecord(_Wire):
    """A subscriber's consent state towards one enterprise, as of `ts`."""

    msisdn: Msisdn
    enterprise: Name
    status: ConsentStatus
    ts: Timestamp
    source: str | None = Field(default=None, max_length=50)
    # How the consent was given; absent means what it meant before the field existed (an
    # explicit consent). An implicit method makes later marketing `consent.implicit`.
    method: ConsentMethod | None = None
    # Where the sender keeps the proof of consent (Order 74): a reference, never the proof.
    proof_ref: str | None = Field(default=None, max_length=200)


class Complaint(_Wire):
    """A 12321 complaint about a message the subscriber received (`sms.complaints`)."""

    complaint_id: Name
    ts: Timestamp
    msisdn: Msisdn
    port: PortCode | None = None
    signature: str | None = Field(default=None, max_length=200)
    text: str | None = Field(default=None, max_length=4_000)
    category: str | None = Field(default=None, max_length=50)


class Exemption(_Wire):
    """An approved exception: alerts of `rule` about `subject` are suppressed until `expires_at`.

    `subject_type` names what `subject` is: a port code (matches the port and its extensions),
    a signature, an account, an enterprise, or an msisdn (compared through its keyed hash).
    `rule` may be `*` for every rule.
    """

    exemption_id: Name
    rule: Name
    subject_type: Literal["port", "signature", "account", "enterprise", "msisdn"]
    subject: Name
    expires_at: Timestamp
    reason: str = Field(min_length=1, max_length=1_000)
    approver: Name


class Alert(BaseModel):
    """One broken rule, with evidence; never the raw msisdn or message text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    alert_id: str
    rule: str
    severity: Severity
    ts: dt.datetime
    detected_at: dt.datetime
    event_id: str = ""
    gateway: str | None = None
    account: str | None = None
    port: str | None = None
    signature: str | None = None
    enterprise: str | None = None
    category: Category | None = None
    # the marketing sector smsmon recognised in the text of a marketing message (declared, or
    # judged by the classifier); per-message alerts of other messages leave it empty
    sector: Literal["retail", "finance", "other"] | None = None
    msisdn_hash: str | None = None
    msisdn_masked: str | None = None
    detail: str = ""
    # Aggregate (windowed) alerts fill these; per-message alerts leave them empty.
    subject_type: Literal["port", "signature", "account", "msisdn"] | None = None
    subject: str | None = None
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    observed: float | None = None
    threshold: float | None = None
    baseline: float | None = None


class DeadLetter(BaseModel):
    """An input that could not be used, with the reason; holds raw subscriber data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = SCHEMA_VERSION
    reason: str
    error: str
    source_topic: str
    partition: int
    offset: int
    key_text: str | None = None
    key_base64: str | None = None
    value_text: str | None = None
    value_base64: str | None = None
    received_at: dt.datetime
    # Set when the original key or value was longer than codec.DEAD_LETTER_KEEP_BYTES and
    # only its first bytes are kept (the record stays at source_topic/partition/offset
    # while the topic retains it).
    truncated: bool | None = None
    original_size: int | None = None
    original_sha256: str | None = None


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every wire model, by file name (exported to streams/schemas/)."""
    from pydantic import TypeAdapter

    return {
        "gateway-event.schema.json": TypeAdapter(GatewayEvent).json_schema(),
        "port-record.schema.json": PortRecord.model_json_schema(),
        "signature-record.schema.json": SignatureRecord.model_json_schema(),
        "consent-record.schema.json": ConsentRecord.model_json_schema(),
        "complaint.schema.json": Complaint.model_json_schema(),
        "exemption.schema.json": Exemption.model_json_schema(),
        "alert.schema.json": Alert.model_json_schema(),
        "dead-letter.schema.json": DeadLetter.model_json_schema(),
    }
