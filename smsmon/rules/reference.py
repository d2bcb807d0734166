"""The port and signature registries every worker holds in full, with longest-prefix lookup."""

from __future__ import annotations

from typing import Any

from smsmon.contract.canonical import canonical_signature
from smsmon.contract.models import PortRecord, SignatureRecord
from smsmon.rules.exemptions import ExemptionBook

MT_JOINS_MAX = 65_536


class ReferenceBook:
    """Ports by registered code and signatures by normalised text; small, held in memory.

    Change them through `put_port` and `put_signature` only: those also forget `mt_joins`,
    the registry joins that `compliance.check_mt` remembers per (port, account, category,
    signature) of the traffic.
    """

    def __init__(self) -> None:
        self.ports: dict[str, PortRecord] = {}
        self.signatures: dict[str, SignatureRecord] = {}
        self.exemptions = ExemptionBook()
        self._max_port_len = 0
        self.mt_joins: dict[tuple[str, str, Any, str | None], Any] = {}

    def remember_mt_join(self, key: tuple[str, str, Any, str | None], joined: Any) -> Any:
        """Keep `joined` for `key` (at most MT_JOINS_MAX, then start over); returns it."""
        if len(self.mt_joins) >= MT_JOINS_MAX:
            self.mt_joins.clear()
        self.mt_joins[key] = joined
        return joined

    def put_port(self, code: str, record: PortRecord | None) -> None:
        """Insert, replace, or (record None) delete a port record."""
        self.mt_joins.clear()
        if record is None:
            self.ports.pop(code, None)
            if len(code) == self._max_port_len:
                self._max_port_len = max((len(c) for c in self.ports), default=0)
        else:
            self.ports[code] = record
            self._max_port_len = max(self._max_port_len, len(code))

    def put_signature(self, sig: str, record: SignatureRecord | None) -> None:
        """Insert, replace, or (record None) delete a signature record."""
        self.mt_joins.clear()
        if record is None:
            self.signatures.pop(sig, None)
        else:
            self.signatures[sig] = record

    def port_for(self, port: str) -> PortRecord | None:
        """The registered code that is the longest prefix of `port` (code plus extension)."""
        ports = self.ports
        for n in range(min(len(port), self._max_port_len), 0, -1):
            rec = ports.get(port[:n])
            if rec is not None:
                return rec
        return None

    def signature_for(self, sig: str | None) -> SignatureRecord | None:
        """The record of a canonical signature, if registered (any status)."""
        if sig is None:
            return None
        return self.signatures.get(sig)


def signature_record_key(record: SignatureRecord) -> str:
    """Canonical key of a signature record (the normalised signature text)."""
    key = canonical_signature(record.signature)
    if key is None:
        raise ValueError("signature record has an empty signature")
    return key
