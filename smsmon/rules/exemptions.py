"""Approved exemptions: which alerts to suppress, until when (judged on the alert's event time)."""

from __future__ import annotations

from smsmon.contract.canonical import MsisdnHasher, canonical_msisdn, canonical_signature
from smsmon.contract.models import Alert, Exemption


class ExemptionBook:
    """Exemptions by id; `match` finds one that covers an alert at its event time."""

    def __init__(self, hasher: MsisdnHasher | None = None) -> None:
        self.hasher = hasher
        self.by_id: dict[str, Exemption] = {}
        self._subject: dict[str, str] = {}  # exemption id -> normalised subject

    def put(self, exemption_id: str, record: Exemption | None) -> None:
        """Insert, replace, or (record None) delete an exemption."""
        if record is None:
            self.by_id.pop(exemption_id, None)
            self._subject.pop(exemption_id, None)
            return
        self.by_id[exemption_id] = record
        self._subject[exemption_id] = self._normalise(record)

    def _normalise(self, e: Exemption) -> str:
        if e.subject_type == "signature":
            return canonical_signature(e.subject) or e.subject
        if e.subject_type == "msisdn":
            number = canonical_msisdn(e.subject)
            return self.hasher(number) if self.hasher is not None else number
        return e.subject

    def match(self, alert: Alert) -> Exemption | None:
        """The first unexpired exemption covering `alert` (by rule and subject), if any."""
        for eid, e in self.by_id.items():
            if e.rule not in ("*", alert.rule) or alert.ts >= e.expires_at:
                continue
            subject = self._subject[eid]
            t = e.subject_type
            if t == "port":
                port = alert.port or (alert.subject if alert.subject_type == "port" else None)
                if port is not None and port.startswith(subject):
                    return e
            elif t == "signature":
                if subject in (alert.signature, alert.subject if alert.subject_type == t else None):
                    return e
            elif t == "account":
                if subject in (alert.account, alert.subject if alert.subject_type == t else None):
                    return e
            elif t == "enterprise":
                if alert.enterprise == subject:
                    return e
            elif alert.msisdn_hash is not None and alert.msisdn_hash == subject:
                return e
        return None

    def __len__(self) -> int:
        return len(self.by_id)
