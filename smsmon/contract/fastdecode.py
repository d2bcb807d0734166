"""The gateway-event decoder of the hot path: msgspec, checked to agree with pydantic.

`decode_event` (codec.py) decodes every record of `sms.events` once (a re-keyed one at its
home partition; its origin reads only the msisdn and `ts`, `route_event`); pydantic's
`validate_json` with the contract's validators costs about 5.7 µs for a typical mt event,
msgspec's typed decode under 1 µs. The pydantic models stay the
contract's one schema (docs/contract.md, the exported JSON Schemas): this module only
*accepts* what they accept, faster.

How agreement is kept: `fast_event` returns an event only when every check of the pydantic
model passed here too (types, lengths, bounds, the canonical msisdn and port, the timestamp
rules, NUL and text-length checks), built with the same values, field order and set fields
as `validate_json` would give; on anything else (malformed JSON, a lax-mode coercion such as
`"segments": "2"`, a value out of bounds) it returns None and the caller runs pydantic, whose
answer (an event, or the named reason of the dead letter) is then the answer. So a record
that msgspec is stricter about costs the slow path, never a different result; the property
test in tests/unit/contract/test_fastdecode.py checks the other direction (whatever msgspec
accepts, pydantic accepts with an equal model) over generated and mutated records.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from smsmon.contract.canonical import CanonicalError, canonical_msisdn, canonical_port
from smsmon.contract.models import (
    Category,
    DlrEvent,
    MoEvent,
    MtEvent,
    check_ts,
)
from smsmon.contract.times import to_ms

# the models' `Name`, the signature and source_ip bounds, `segments`' range
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_UNSET = msgspec.UNSET
_Unset = msgspec.UnsetType
# _Wire's str_max_length: every str field of the models
_STR_MAX = 100_000


class _Base(msgspec.Struct, tag_field="kind", forbid_unknown_fields=False):
    event_id: _Name
    ts: str | int
    gateway: _Name
    port: str | int
    msisdn: str
    schema_version: int | _Unset = _UNSET


class _Mt(_Base, tag="mt"):
    account: _Name | _Unset = _UNSET
    category: Category | _Unset = _UNSET
    text: str | _Unset = _UNSET
    signature: Annotated[str, msgspec.Meta(max_length=200)] | _Unset | None = _UNSET
    segments: Annotated[int, msgspec.Meta(ge=1, le=255)] | _Unset = _UNSET
    source_ip: Annotated[str, msgspec.Meta(max_length=64)] | _Unset | None = _UNSET


class _Mo(_Base, tag="mo"):
    text: str | _Unset = _UNSET


class _Dlr(_Base, tag="dlr"):
    status: _Name | _Unset = _UNSET


_DECODER = msgspec.json.Decoder(_Mt | _Mo | _Dlr)
_new = object.__new__
_set = object.__setattr__
_REQUIRED = ("event_id", "ts", "gateway", "port", "msisdn", "kind")


def fast_event(
    raw: bytes, vctx: dict[str, Any], canonical: str | None = None
) -> MtEvent | MoEvent | DlrEvent | None:
    """The event pydantic would decode from `raw` under the validation context `vctx`, or
    None when this path cannot tell (the caller then asks pydantic). `canonical`: a
    canonical msisdn the caller has (the record key's); a value naming it as it is needs no
    canonicalising (a canonical msisdn is its own canonical form)."""
    if not raw.isascii():
        # msgspec skips unknown fields without checking their bytes; the contract wants all
        # of the value to be UTF-8 (reason `encoding`)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        w = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    try:
        ts = check_ts(w.ts, vctx["tz"], vctx["now"], vctx["max_future_skew"], vctx["latest"])
        port = canonical_port(w.port)
        msisdn = w.msisdn if w.msisdn == canonical else canonical_msisdn(w.msisdn)
    except (ValueError, CanonicalError):
        return None
    if "\x00" in w.event_id or "\x00" in w.gateway:
        return None
    version = w.schema_version
    has_version = version is not _UNSET
    if type(w) is _Mt:
        text = w.text
        if (
            w.account is _UNSET
            or w.category is _UNSET
            or text is _UNSET
            or not _text_ok(text, vctx)
        ):
            return None
        signature, segments, source_ip = w.signature, w.segments, w.source_ip
        model: type[MtEvent | MoEvent | DlrEvent] = MtEvent
        values: dict[str, Any] = {
            "schema_version": version if has_version else 1,
            "event_id": w.event_id,
            "ts": ts,
            "gateway": w.gateway,
            "port": port,
            "msisdn": msisdn,
            "kind": "mt",
            "account": w.account,
            "category": w.category,
            "text": text,
            "signature": None if signature is _UNSET else signature,
            "segments": 1 if segments is _UNSET else segments,
            "source_ip": None if source_ip is _UNSET else source_ip,
        }
        shape = (
            1,
            has_version,
            signature is not _UNSET,
            segments is not _UNSET,
            source_ip is not _UNSET,
        )
    elif type(w) is _Mo:
        if w.text is _UNSET or not _text_ok(w.text, vctx):
            return None
        model = MoEvent
        values = {
            "schema_version": version if has_version else 1,
            "event_id": w.event_id,
            "ts": ts,
            "gateway": w.gateway,
            "port": port,
            "msisdn": msisdn,
            "kind": "mo",
            "text": w.text,
        }
        shape = (2, has_version, False, False, False)
    else:
        if w.status is _UNSET:
            return None
        model = DlrEvent
        values = {
            "schema_version": version if has_version else 1,
            "event_id": w.event_id,
            "ts": ts,
            "gateway": w.gateway,
            "port": port,
            "msisdn": msisdn,
            "kind": "dlr",
            "status": w.status,
        }
        shape = (3, has_version, False, False, False)
    fields_set = _FIELDS_SET.get(shape)
    if fields_set is None:
        fields_set = _FIELDS_SET[shape] = _fields_set(shape)
    event = _new(model)
    _set(event, "__dict__", values)
    _set(event, "__pydantic_fields_set__", set(fields_set))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


class _Route(msgspec.Struct, forbid_unknown_fields=False):
    ts: str | int
    msisdn: str | _Unset = _UNSET


_ROUTE = msgspec.json.Decoder(_Route)


def route_event(raw: bytes, vctx: dict[str, Any], msisdn: bool) -> tuple[str | None, int] | None:
    """(canonical msisdn, or None unless `msisdn`; event time in epoch ms) of a gateway
    event, for the origin of a record that is re-keyed (`Pipeline._on_gateway_event`), or
    None when this cannot tell (the caller then decodes the record fully).

    Only what placing the record needs: its home partition and its event time (the
    watermark markers). The record is decoded fully, once, at its home partition, and
    dead-lettered there if invalid (with its origin's topic, partition and offset), so a
    re-keyed record costs one extra produce and fetch, not a second full decode. Both values
    pass the same checks as in `fast_event` (`check_ts`, `canonical_msisdn`); a record this
    cannot read takes the full decode at its origin."""
    try:
        r = _ROUTE.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    try:
        ts = check_ts(r.ts, vctx["tz"], vctx["now"], vctx["max_future_skew"], vctx["latest"])
        m = None
        if msisdn:
            if r.msisdn is _UNSET:
                return None
            m = canonical_msisdn(r.msisdn)
    except (ValueError, CanonicalError):
        return None
    return m, to_ms(ts)


# the fields an input set, by (kind, schema_version, signature, segments, source_ip present)
_FIELDS_SET: dict[tuple[int, bool, bool, bool, bool], frozenset[str]] = {}
_KIND_FIELDS = {1: ("account", "category", "text"), 2: ("text",), 3: ("status",)}


def _fields_set(shape: tuple[int, bool, bool, bool, bool]) -> frozenset[str]:
    kind, version, signature, segments, source_ip = shape
    names = set(_REQUIRED) | set(_KIND_FIELDS[kind])
    for present, name in (
        (version, "schema_version"),
        (signature, "signature"),
        (segments, "segments"),
        (source_ip, "source_ip"),
    ):
        if present:
            names.add(name)
    return frozenset(names)


def _text_ok(text: str, vctx: dict[str, Any]) -> bool:
    return len(text) <= vctx["max_text_chars"] and len(text) <= _STR_MAX and "\x00" not in text
