"""What each rule checks, for the alert page: the catalogue's summary plus an explanation."""

from __future__ import annotations

from dataclasses import dataclass

from smsmon.rules import catalog, traffic

_EXPLAIN: dict[str, str] = {
    "port.unregistered": "No port record in the port registry matches the message's source "
    "address (neither the full address nor a registered code it extends).",
    "port.suspended": "The registered port the message was sent from is suspended.",
    "port.account": "The sending account is not among the accounts granted the port: the "
    "pattern of a sublet or resold code number (转租).",
    "port.category": "The declared category (marketing, notification, verification) is not one "
    "the port may carry, e.g. marketing on a 1069 notification port.",
    "signature.missing": "The message carries no signature (no 【…】 at its start or end and "
    "no signature field).",
    "signature.unregistered": "The signature is not in the signature registry, or its record "
    "is revoked.",
    "signature.scope": "The signature is active but used outside its registered scope: on a "
    "port not listed for it, or on a port of another (non-shared) enterprise.",
    "consent.missing": "Declared marketing to a subscriber for whom no consent state towards "
    "the enterprise is recorded.",
    "consent.revoked": "Declared marketing after the subscriber revoked consent (replied "
    "退订/TD/T, or a consent platform recorded a revocation) at or before the message's time.",
    "consent.implicit": "Declared marketing whose only consent is a default or implied one "
    "(a registration default, an implied agreement): that does not make marketing lawful. The "
    "consent record's method and proof reference are in the timeline.",
    "content.optout_missing": "A marketing message without a way to refuse (e.g. 回T退订, "
    "拒收请回复R).",
    "content.misdeclared": "The text reads as marketing (the n-gram classifier) but was "
    "declared as notification or verification, or a verification/notice carries a promotion.",
    "time.quiet_hours": "Marketing sent outside the allowed hours (by default 08:00-21:00 in "
    "the configured timezone).",
    "volume.spike": "In an event-time window, the message volume of a port, signature or "
    "account was far above its baseline (observed vs threshold and baseline below).",
    "recipient.flood": "One subscriber received many messages from many senders in a short "
    "window: SMS bombing (短信轰炸).",
    "port.sublet": "A port showing the pattern of resale: many signatures of unrelated "
    "enterprises and new accounts on one code number in a window.",
    "complaint.rate": "12321 complaints against a port, signature or account above the "
    "allowed rate in a window.",
}


@dataclass(frozen=True, slots=True)
class RuleInfo:
    id: str
    severity: str
    summary: str
    explanation: str


def _catalogue() -> dict[str, RuleInfo]:
    rules = [
        *catalog.PER_MESSAGE_RULES,
        traffic.VOLUME_SPIKE,
        traffic.RECIPIENT_FLOOD,
        traffic.PORT_SUBLET,
        traffic.COMPLAINT_RATE,
    ]
    return {
        r.id: RuleInfo(r.id, str(r.severity), r.summary, _EXPLAIN.get(r.id, r.summary))
        for r in rules
    }


RULES: dict[str, RuleInfo] = _catalogue()


def rule_info(rule_id: str) -> RuleInfo:
    """The catalogue entry, or a plain one for a rule this console does not know yet."""
    return RULES.get(rule_id) or RuleInfo(rule_id, "", "(not in this console's catalogue)", "")
