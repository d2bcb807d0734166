"""Consent state per (msisdn, enterprise), unsubscribe keywords and their attribution."""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from typing import NamedTuple

import msgspec

from smsmon.contract.canonical import compact_json, normalize_keyword, state_json
from smsmon.contract.models import ConsentStatus

UNSUBSCRIBE_KEYWORDS = frozenset(
    {"t", "td", "r", "n", "stop", "unsubscribe", "退订", "取消", "拒收"}
)


def is_unsubscribe(text: str) -> bool:
    """True when an mo reply's normalised text is an unsubscribe keyword or contains 退订."""
    norm = normalize_keyword(text)
    return norm in UNSUBSCRIBE_KEYWORDS or "退订" in norm


@dataclass(frozen=True, slots=True)
class ImplicitConsent:
    """Evidence of a grant given by default or implied (`ConsentMethod` in the contract):
    what the `consent.implicit` alert cites."""

    method: str
    source: str | None = None
    proof_ref: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The standing consent record of one (msisdn, enterprise) pair."""

    status: ConsentStatus
    ts_us: int
    # set only for a grant whose method does not count as consent
    implicit: ImplicitConsent | None = None

    @property
    def revoked(self) -> bool:
        return self.status is ConsentStatus.REVOKED

    def encode(self) -> bytes:
        """`g:<ts>`, `r:<ts>`, or `i:<ts>:<json [method, source, proof_ref]>` for an implicit
        grant (the first two are what every earlier version wrote)."""
        if self.implicit is not None and not self.revoked:
            imp = self.implicit
            return f"i:{self.ts_us}:".encode() + compact_json(
                [imp.method, imp.source, imp.proof_ref]
            )
        return f"{'r' if self.revoked else 'g'}:{self.ts_us}".encode()

    @classmethod
    def decode(cls, raw: bytes) -> ConsentState:
        flag, _, rest = raw.decode().partition(":")
        if flag == "i":
            ts, _, evidence = rest.partition(":")
            method, source, proof_ref = json.loads(evidence)
            return cls(ConsentStatus.GRANTED, int(ts), ImplicitConsent(method, source, proof_ref))
        status = ConsentStatus.REVOKED if flag == "r" else ConsentStatus.GRANTED
        return cls(status, int(rest))


class Merge:
    """Outcome of applying a consent record to the standing state."""

    APPLIED = "applied"
    SAME = "same"
    STALE = "stale"


def merge_consent(current: ConsentState | None, incoming: ConsentState) -> str:
    """Contract: the greatest ts stands; on equal ts revoked wins; older records are stale."""
    if current is None or incoming.ts_us > current.ts_us:
        return Merge.APPLIED
    if incoming.ts_us == current.ts_us:
        if incoming.status == current.status:
            # the same grant restated with other evidence: the later record stands
            return Merge.SAME if incoming == current else Merge.APPLIED
        return Merge.APPLIED if incoming.revoked else Merge.STALE
    return Merge.STALE


class RecentSender(NamedTuple):
    """The enterprise of the latest mt (with known enterprise) from one port to one msisdn.

    Also remembers that mt's signature and when the port last sent marketing to the
    subscriber (0 if never), which complaint attribution uses. Times in epoch milliseconds.
    A named tuple: one is built per mt, and a frozen dataclass's `__init__` is slower.
    """

    port: str
    enterprise: str
    ts_ms: int
    signature: str | None = None
    marketing_ms: int = 0


_TS_MS = operator.attrgetter("ts_ms")


class _RecentDoc(msgspec.Struct):
    """A RecentSenders value once the cap pushed a port out: {"s": entries, "e": ports}."""

    s: list[RecentSender]
    e: list[str] = []


_RECENT = msgspec.json.Decoder(list[RecentSender] | _RecentDoc)


#: How many ports pushed out by the capacity a subscriber's memory still names, so that an
#: unsubscribe to one of them is counted as "evicted" rather than "unknown sender".
EVICTED_KEEP = 16


class RecentSenders:
    """Per-msisdn memory of who last wrote from which port (for 退订 attribution).

    Every port within the attribution horizon is kept, up to a safety cap (`capacity`,
    SMSMON_RECENT_PORTS_PER_MSISDN, at least 128) that only a subscriber bombarded from more
    ports than that reaches; the newest `EVICTED_KEEP` ports the cap pushed out are
    remembered by name (`evicted`), without their sender.
    """

    __slots__ = ("entries", "evicted")

    def __init__(
        self, entries: list[RecentSender] | None = None, evicted: list[str] | None = None
    ) -> None:
        self.entries: list[RecentSender] = entries or []
        self.evicted: list[str] = evicted or []

    def lookup(self, port: str, now_ms: int, horizon_ms: int) -> str | None:
        """Enterprise of the latest mt from `port` within the horizon, if any."""
        for e in self.entries:
            if e.port == port and now_ms - e.ts_ms <= horizon_ms:
                return e.enterprise
        return None

    def record(self, sender: RecentSender, capacity: int, horizon_ms: int) -> bool:
        """Remember `sender`; returns False when nothing changed (no write needed)."""
        entries = self.entries
        port = sender.port
        for old in entries:
            if old.port == port:
                if old.ts_ms > sender.ts_ms:
                    return False
                if old.marketing_ms > sender.marketing_ms:
                    sender = RecentSender(
                        sender.port,
                        sender.enterprise,
                        sender.ts_ms,
                        sender.signature,
                        old.marketing_ms,
                    )
                if old == sender:
                    return False
                break
        ts_ms = sender.ts_ms
        keep = [e for e in entries if e.port != port and ts_ms - e.ts_ms <= horizon_ms]
        keep.append(sender)
        if len(keep) > 1:
            keep.sort(key=_TS_MS, reverse=True)
        evicted = self.evicted
        if port in evicted:
            evicted = [p for p in evicted if p != port]
        if len(keep) > capacity:
            pushed = [e.port for e in keep[capacity:]]
            evicted = (pushed + [p for p in evicted if p not in pushed])[:EVICTED_KEEP]
            keep = keep[:capacity]
        self.entries = keep
        self.evicted = evicted
        return True

    def was_evicted(self, port: str) -> bool:
        """True if the capacity pushed `port` out of this memory."""
        return port in self.evicted

    def marketing(self) -> list[tuple[str, str | None, int]]:
        """(port, signature, last marketing ts) of senders that sent marketing."""
        return [(e.port, e.signature, e.marketing_ms) for e in self.entries if e.marketing_ms]

    def encode(self) -> bytes:
        """JSON: the list of entries, or {"s": entries, "e": evicted ports} once the cap has
        pushed a port out (values written before `evicted` existed stay readable)."""
        entries = self.entries  # named tuples: JSON arrays, as lists of their fields were
        if not self.evicted:
            return state_json(entries)
        return state_json({"s": entries, "e": self.evicted})

    @classmethod
    def decode(cls, raw: bytes | None) -> RecentSenders:
        if not raw:
            return cls()
        try:  # typed: the RecentSender tuples built by msgspec
            doc = _RECENT.decode(raw)
        except msgspec.ValidationError:  # a value of other types than we write: as before
            loose = json.loads(raw)
            if isinstance(loose, dict):
                return cls([RecentSender(*row) for row in loose["s"]], list(loose.get("e", ())))
            return cls([RecentSender(*row) for row in loose])
        if isinstance(doc, list):
            return cls(doc)
        return cls(doc.s, list(doc.e))
