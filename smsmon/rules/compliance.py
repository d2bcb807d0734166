"""Per-message rules for an mt event: port, signature and consent, as the contract states."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from smsmon.contract.canonical import extract_signature
from smsmon.contract.models import (
    Category,
    MtEvent,
    PortRecord,
    PortStatus,
    SignatureRecord,
    SignatureStatus,
)
from smsmon.contract.times import from_us, to_us
from smsmon.rules import catalog as R
from smsmon.rules.consent import ConsentState
from smsmon.rules.reference import ReferenceBook

ConsentLookup = Callable[[str, str], ConsentState | None]


@dataclass(slots=True)
class Finding:
    """One broken rule and what was expected versus seen (no msisdn, no message text)."""

    rule: R.Rule
    detail: str


@dataclass(slots=True)
class MtVerdict:
    """What the rules concluded about one mt event, with the joins they used."""

    port: PortRecord | None
    signature: str | None
    sig_record: SignatureRecord | None
    enterprise: str | None
    findings: list[Finding] = field(default_factory=list)

    @property
    def port_key(self) -> str | None:
        return self.port.port if self.port is not None else None


def derive_enterprise(port: PortRecord | None, sig: SignatureRecord | None) -> str | None:
    """E: the signature's enterprise (any status), else a non-shared port's, else unknown."""
    if sig is not None:
        return sig.enterprise
    if port is not None and not port.shared:
        return port.enterprise
    return None


def check_mt(event: MtEvent, book: ReferenceBook, consent: ConsentLookup) -> MtVerdict:
    """Apply every per-message rule to `event`; each rule that holds yields one finding."""
    sig = extract_signature(event.signature, event.text)
    key = (event.port, event.account, event.category, sig)
    joined: MtJoin | None = book.mt_joins.get(key)
    if joined is None:
        joined = book.remember_mt_join(key, _join_mt(event, sig, book))
    p, s, ent, static = joined
    v = MtVerdict(p, sig, s, ent, list(static))  # port, signature, sig_record, enterprise
    if event.category is Category.MARKETING and ent is not None:
        state = consent(event.msisdn, ent)
        if state is None:
            v.findings.append(Finding(R.CONSENT_MISSING, f"no consent recorded for {ent}"))
        elif state.revoked and state.ts_us <= to_us(event.ts):
            # Judged as of the message's own ts: a revocation stamped after the message
            # does not apply to it. A replay after a crash finds the table already holding
            # revocations written by later records; without this the replayed messages
            # would be judged "after unsubscribe" (docs/reliability.md, replay semantics).
            v.findings.append(
                Finding(
                    R.CONSENT_REVOKED,
                    f"consent to {ent} revoked as of {from_us(state.ts_us).isoformat()}",
                )
            )
        elif state.implicit is not None and not state.revoked:
            imp = state.implicit
            v.findings.append(
                Finding(
                    R.CONSENT_IMPLICIT,
                    f"consent to {ent} is {imp.method} (ts {from_us(state.ts_us).isoformat()}, "
                    f"source {imp.source or '-'}, proof {imp.proof_ref or '-'}): "
                    "not an explicit consent",
                )
            )
    return v


MtJoin = tuple[PortRecord | None, SignatureRecord | None, str | None, tuple[Finding, ...]]


def _join_mt(event: MtEvent, sig: str | None, book: ReferenceBook) -> MtJoin:
    """The registry joins of an mt event and its port and signature findings.

    They depend on the event's port, account, category and signature alone (and on the
    registry), so the book remembers them per such key until the registry changes.
    """
    p = book.port_for(event.port)
    s = book.signature_for(sig)
    ent = derive_enterprise(p, s)
    out: list[Finding] = []

    if p is None:
        out.append(Finding(R.PORT_UNREGISTERED, f"no registered code is a prefix of {event.port}"))
    else:
        if p.status is PortStatus.SUSPENDED:
            out.append(Finding(R.PORT_SUSPENDED, f"port {p.port} is suspended"))
        if event.account not in p.accounts:
            out.append(
                Finding(
                    R.PORT_ACCOUNT,
                    f"account {event.account!r} is not among the {len(p.accounts)} "
                    f"account(s) registered on port {p.port} for {p.enterprise}",
                )
            )
        if event.category not in p.categories:
            allowed = ",".join(sorted(c.value for c in p.categories)) or "none"
            out.append(
                Finding(
                    R.PORT_CATEGORY,
                    f"category {event.category.value} not allowed on port {p.port} "
                    f"(allowed: {allowed})",
                )
            )

    if sig is None:
        out.append(Finding(R.SIGNATURE_MISSING, "no signature field and no 【…】 in the text"))
    elif s is None:
        out.append(Finding(R.SIGNATURE_UNREGISTERED, f"signature 【{sig}】 is not registered"))
    elif s.status is SignatureStatus.REVOKED:
        out.append(Finding(R.SIGNATURE_UNREGISTERED, f"signature 【{sig}】 is revoked"))
    else:
        used_port = p.port if p is not None else event.port
        if s.ports and used_port not in s.ports:
            out.append(
                Finding(
                    R.SIGNATURE_SCOPE,
                    f"signature 【{sig}】 is registered for {len(s.ports)} port(s), "
                    f"not {used_port}",
                )
            )
        elif p is not None and not p.shared and p.enterprise != s.enterprise:
            out.append(
                Finding(
                    R.SIGNATURE_SCOPE,
                    f"signature 【{sig}】 belongs to {s.enterprise} but port {p.port} "
                    f"belongs to {p.enterprise}",
                )
            )
    return p, s, ent, tuple(out)
