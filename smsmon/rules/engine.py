"""The pure per-event engine: decoded events and state in, alerts and state changes out.

The live Faust agent and the offline audit both drive this class, so they cannot disagree.
State is reached through the `State` protocol; `BatchOverlay` gives a batch read-your-writes
semantics over a slower backing store and coalesces writes to one per key per batch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from smsmon.contract.canonical import MsisdnHasher, mask_msisdn
from smsmon.contract.models import (
    IMPLICIT_CONSENT_METHODS,
    SCHEMA_VERSION,
    Alert,
    Category,
    ConsentRecord,
    ConsentStatus,
    DlrEvent,
    MoEvent,
    MtEvent,
    Severity,
)
from smsmon.contract.times import to_ms, to_us
from smsmon.rules import catalog as R
from smsmon.rules.compliance import Finding, MtVerdict, check_mt
from smsmon.rules.consent import (
    ConsentState,
    ImplicitConsent,
    Merge,
    RecentSender,
    RecentSenders,
    is_unsubscribe,
    merge_consent,
)
from smsmon.rules.reference import ReferenceBook

Event = MtEvent | MoEvent | DlrEvent
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
W = TypeVar("W")


class State(Protocol):
    """Where the engine reads and writes per-subscriber state."""

    def consent(self, msisdn: str, enterprise: str) -> ConsentState | None: ...

    def set_consent(self, msisdn: str, enterprise: str, state: ConsentState | None) -> None: ...

    def recent(self, msisdn: str) -> RecentSenders: ...

    def set_recent(self, msisdn: str, senders: RecentSenders) -> None: ...


_MISSING = object()


class BatchOverlay(Generic[K, V, W]):
    """Read-your-writes cache over `load`; remembers which writer last touched each key.

    Writes stay in the overlay until `drain()`, which yields each dirty key once with its
    final value, the writer token of its last write (the live agent uses the Faust event,
    so the changelog write lands in that event's partition) and the value it had before the
    batch (so callers can keep exact entry counts).
    """

    def __init__(self, load: Callable[[K], V | None]) -> None:
        self._load = load
        self._cache: dict[K, V | None] = {}
        self._dirty: dict[K, W] = {}
        self._before: dict[K, V | None] = {}

    def get(self, key: K) -> V | None:
        v = self._cache.get(key, _MISSING)
        if v is _MISSING:
            loaded = self._load(key)
            self._cache[key] = loaded
            return loaded
        return v  # type: ignore[return-value]

    def set(self, key: K, value: V | None, writer: W) -> None:
        if key not in self._before:
            self._before[key] = self.get(key)
        self._cache[key] = value
        self._dirty[key] = writer

    def drain(self) -> Iterator[tuple[K, V | None, W, V | None]]:
        """Each dirty key once: (key, final value, last writer, value before the batch)."""
        for key, writer in self._dirty.items():
            yield key, self._cache[key], writer, self._before[key]
        self._dirty.clear()
        self._cache.clear()
        self._before.clear()

    def __len__(self) -> int:
        return len(self._dirty)


ID_DIGEST_BYTES = 8


def id_digest(event_id: str) -> bytes:
    """The 8-byte BLAKE2b digest of an event id: what a subscriber's recent-id window keeps."""
    return hashlib.blake2b(event_id.encode(), digest_size=ID_DIGEST_BYTES).digest()


def seen_in(window: bytes, event_id: str, capacity: int) -> tuple[bool, bytes]:
    """(repeated?, new window) for `event_id` against one subscriber's recent-id window.

    The window is part of the subscriber's committed state (the `subscribers` table), not
    process memory: a repeat of an event processed before a crash is recognised after it
    too (docs/reliability.md, "The processing protocol"). It holds the digests of the last
    `capacity` new ids (events and complaints) of the subscriber, 8 bytes each, oldest
    first; only a match at an entry boundary counts. Gateways repeat an event for the same
    subscriber within seconds, a few of its messages later at most."""
    if capacity <= 0:
        return False, window
    digest = id_digest(event_id)
    at = window.find(digest)
    while at >= 0:
        if at % ID_DIGEST_BYTES == 0:
            return True, window
        at = window.find(digest, at + 1)
    window = window + digest
    keep = capacity * ID_DIGEST_BYTES
    if len(window) > keep:
        window = window[-keep:]
    return False, window


class ContentRules(Protocol):
    """Content checks of an mt event (smsmon/rules/content/checks.py)."""

    def check(self, event: MtEvent) -> list[Finding]: ...

    def sector(self, text: str) -> str: ...


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Bounds and keys the engine needs; `content` adds the content rules when given."""

    hasher: MsisdnHasher
    recent_capacity: int = 128
    recent_horizon_ms: int = 30 * 86_400_000
    content: ContentRules | None = None
    # event and complaint ids remembered per subscriber (repeats are skipped)
    dedup_ids: int = 16


@dataclass(slots=True)
class Outcome:
    """Everything one event produced."""

    alerts: list[Alert] = field(default_factory=list)
    revocations: list[ConsentRecord] = field(default_factory=list)
    unsubscribe: bool | None = None  # None: not an unsubscribe; else attributed or not
    # why an unsubscribe was not attributed: "evicted" (its sender was pushed out of the
    # subscriber's memory by the cap) or "unknown_sender" (no mt from that port in the horizon)
    unattributed: str | None = None
    verdict: MtVerdict | None = None


class Engine:
    """Applies the contract's per-message rules and unsubscribe handling, in event order."""

    def __init__(self, book: ReferenceBook, config: EngineConfig) -> None:
        self.book = book
        self.config = config

    def on_event(self, event: Event, state: State, detected_at: dt.datetime) -> Outcome:
        """Process one decoded gateway event against `state` (which it may update)."""
        if isinstance(event, MtEvent):
            return self._on_mt(event, state, detected_at)
        if isinstance(event, MoEvent):
            return self._on_mo(event, state)
        return Outcome()

    def on_consent(
        self, msisdn: str, enterprise: str, record: ConsentRecord | None, state: State
    ) -> str:
        """Apply a consent record (None = tombstone, deletes). Returns a Merge value."""
        if record is None:
            state.set_consent(msisdn, enterprise, None)
            return Merge.APPLIED
        implicit = None
        if record.method in IMPLICIT_CONSENT_METHODS:
            implicit = ImplicitConsent(str(record.method), record.source, record.proof_ref)
        incoming = ConsentState(record.status, to_us(record.ts), implicit)
        result = merge_consent(state.consent(msisdn, enterprise), incoming)
        if result == Merge.APPLIED:
            state.set_consent(msisdn, enterprise, incoming)
        return result

    def _on_mt(self, event: MtEvent, state: State, detected_at: dt.datetime) -> Outcome:
        verdict = check_mt(event, self.book, state.consent)
        if self.config.content is not None:
            verdict.findings.extend(self.config.content.check(event))
        out = Outcome(verdict=verdict)
        if verdict.findings:
            msisdn_hash = self.config.hasher(event.msisdn)
            masked = mask_msisdn(event.msisdn)
            sector = self._sector(event, verdict.findings)
            for f in verdict.findings:
                out.alerts.append(
                    message_alert(
                        R.alert_id(f.rule.id, event.event_id),
                        f.rule,
                        event,
                        detected_at,
                        verdict.signature,
                        verdict.enterprise,
                        msisdn_hash,
                        masked,
                        f.detail,
                        sector,
                    )
                )
        if verdict.enterprise is not None:
            port_key = verdict.port_key or event.port
            senders = state.recent(event.msisdn)
            ts_ms = to_ms(event.ts)
            sender = RecentSender(
                port_key,
                verdict.enterprise,
                ts_ms,
                verdict.signature,
                ts_ms if event.category is Category.MARKETING else 0,
            )
            if senders.record(sender, self.config.recent_capacity, self.config.recent_horizon_ms):
                state.set_recent(event.msisdn, senders)
        return out

    def _sector(self, event: MtEvent, findings: list[Finding]) -> str | None:
        """The marketing sector of a marketing message (declared, or judged misdeclared by
        the classifier); None for other messages or without the content rules."""
        content = self.config.content
        if content is None:
            return None
        if event.category is Category.MARKETING or any(
            f.rule is R.CONTENT_MISDECLARED for f in findings
        ):
            return content.sector(event.text)
        return None

    def _on_mo(self, event: MoEvent, state: State) -> Outcome:
        out = Outcome()
        if not is_unsubscribe(event.text):
            return out
        p = self.book.port_for(event.port)
        port_key = p.port if p is not None else event.port
        ts_ms = to_ms(event.ts)
        senders = state.recent(event.msisdn)
        target = senders.lookup(port_key, ts_ms, self.config.recent_horizon_ms)
        if target is None and p is not None and not p.shared:
            target = p.enterprise
        if target is None:
            out.unsubscribe = False
            out.unattributed = "evicted" if senders.was_evicted(port_key) else "unknown_sender"
            return out
        out.unsubscribe = True
        record = ConsentRecord(
            msisdn=event.msisdn,
            enterprise=target,
            status=ConsentStatus.REVOKED,
            ts=event.ts,
            source="mo",
        )
        if self.on_consent(event.msisdn, target, record, state) == Merge.APPLIED:
            out.revocations.append(record)
        return out


_MESSAGE_ALERT_FIELDS = frozenset(
    {
        "alert_id",
        "rule",
        "severity",
        "ts",
        "detected_at",
        "event_id",
        "gateway",
        "account",
        "port",
        "signature",
        "enterprise",
        "category",
        "sector",
        "msisdn_hash",
        "msisdn_masked",
        "detail",
    }
)
_SECTORS = frozenset({"retail", "finance", "other"})
_new = object.__new__
_set = object.__setattr__


def message_alert(
    alert_id: str,
    rule: R.Rule,
    event: MtEvent,
    detected_at: dt.datetime,
    signature: str | None,
    enterprise: str | None,
    msisdn_hash: str,
    masked: str,
    detail: str,
    sector: str | None = None,
) -> Alert:
    """The per-message alert of `rule` for `event`: `Alert(alert_id=..., ..., detail=...)`.

    Its values come from a validated event, the rule catalog and the engine, so they already
    have their fields' types; the Alert is then built as pydantic's `model_construct` would
    (same values, same field order, same set fields), without validating them again. Should
    a value not have the exact type (an event built without validation, a datetime subclass
    from a test clock), it is validated as `Alert(...)` always did.
    """
    ts = event.ts
    if (
        type(ts) is not dt.datetime
        or type(detected_at) is not dt.datetime
        or type(rule.severity) is not Severity
        or type(event.category) is not Category
        or type(alert_id) is not str
        or type(rule.id) is not str
        or type(event.event_id) is not str
        or type(event.gateway) is not str
        or type(event.account) is not str
        or type(event.port) is not str
        or type(msisdn_hash) is not str
        or type(masked) is not str
        or type(detail) is not str
        or not (signature is None or type(signature) is str)
        or not (enterprise is None or type(enterprise) is str)
        or not (sector is None or sector in _SECTORS)
    ):
        return Alert(
            alert_id=alert_id,
            rule=rule.id,
            severity=rule.severity,
            ts=ts,
            detected_at=detected_at,
            event_id=event.event_id,
            gateway=event.gateway,
            account=event.account,
            port=event.port,
            signature=signature,
            enterprise=enterprise,
            category=event.category,
            sector=sector,
            msisdn_hash=msisdn_hash,
            msisdn_masked=masked,
            detail=detail,
        )
    alert = _new(Alert)
    _set(
        alert,
        "__dict__",
        {
            "schema_version": SCHEMA_VERSION,
            "alert_id": alert_id,
            "rule": rule.id,
            "severity": rule.severity,
            "ts": ts,
            "detected_at": detected_at,
            "event_id": event.event_id,
            "gateway": event.gateway,
            "account": event.account,
            "port": event.port,
            "signature": signature,
            "enterprise": enterprise,
            "category": event.category,
            "sector": sector,
            "msisdn_hash": msisdn_hash,
            "msisdn_masked": masked,
            "detail": detail,
            "subject_type": None,
            "subject": None,
            "window_start": None,
            "window_end": None,
            "observed": None,
            "threshold": None,
            "baseline": None,
        },
    )
    _set(alert, "__pydantic_fields_set__", set(_MESSAGE_ALERT_FIELDS))
    _set(alert, "__pydantic_extra__", None)
    _set(alert, "__pydantic_private__", None)
    return alert


class DictState:
    """In-memory `State` (tests, the offline audit)."""

    def __init__(self) -> None:
        self.consents: dict[tuple[str, str], ConsentState] = {}
        self.recents: dict[str, RecentSenders] = {}

    def consent(self, msisdn: str, enterprise: str) -> ConsentState | None:
        return self.consents.get((msisdn, enterprise))

    def set_consent(self, msisdn: str, enterprise: str, state: ConsentState | None) -> None:
        if state is None:
            self.consents.pop((msisdn, enterprise), None)
        else:
            self.consents[(msisdn, enterprise)] = state

    def recent(self, msisdn: str) -> RecentSenders:
        r = self.recents.get(msisdn)
        return RecentSenders(list(r.entries), list(r.evicted)) if r is not None else RecentSenders()

    def set_recent(self, msisdn: str, senders: RecentSenders) -> None:
        self.recents[msisdn] = senders
