"""The port and signature registries every worker holds in full, with longest-prefix lookup."""

from __future__ import annotations

from typing import Any

from smsmon.config.settings import Settings
from smsmon.contract.canonical import CanonicalError, canonical_signature
from smsmon.contract.codec import DecodeContext, DecodeError, decode_model, port_key, signature_key
from smsmon.contract.models import Exemption, PortRecord, SignatureRecord
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


def apply_reference(
    book: ReferenceBook,
    settings: Settings,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    ctx: DecodeContext,
) -> str:
    """Validate one reference record and apply it to `book` (port, signature or exemption).

    Raises DecodeError (with its dead-letter reason) and leaves the book unchanged.
    """
    if topic == settings.topic_ports:
        code = port_key(key)
        if value is None:
            book.put_port(code, None)
            return "port"
        port = decode_model(PortRecord, value, ctx)
        if port.port != code:
            raise DecodeError("schema:key", "key and value name different ports")
        book.put_port(code, port)
        return "port"
    if topic == settings.topic_exemptions:
        try:
            eid = (key or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("schema:key", "exemption key is not UTF-8") from None
        if not eid:
            raise DecodeError("schema:key", "exemption key is empty")
        if value is None:
            book.exemptions.put(eid, None)
            return "exemption"
        exemption = decode_model(Exemption, value, ctx)
        if exemption.exemption_id != eid:
            raise DecodeError("schema:key", "key and value name different exemptions")
        try:
            book.exemptions.put(eid, exemption)
        except CanonicalError as exc:
            raise DecodeError("schema:subject", str(exc)) from None
        return "exemption"
    sig = signature_key(key)
    if value is None:
        book.put_signature(sig, None)
        return "signature"
    record = decode_model(SignatureRecord, value, ctx)
    try:
        record_sig = signature_key(record.signature.encode())
    except DecodeError:
        raise DecodeError("schema:signature", "signature is empty after normalisation") from None
    if record_sig != sig:
        raise DecodeError("schema:key", "key and value name different signatures")
    book.put_signature(sig, record)
    return "signature"
