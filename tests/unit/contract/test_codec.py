"""Codec: gateway events and reference records from bytes, with named dead-letter reasons."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmon.contract.codec import (
    DEAD_LETTER_KEEP_BYTES,
    DecodeContext,
    DecodeError,
    consent_key,
    dead_letter,
    decode_event,
    decode_model,
    port_key,
    signature_key,
)
from smsmon.contract.models import (
    Category,
    ConsentRecord,
    ConsentStatus,
    DlrEvent,
    MoEvent,
    MtEvent,
    PortRecord,
    PortStatus,
    SignatureRecord,
)

pytestmark = pytest.mark.unit

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
CTX = DecodeContext(tz=SHANGHAI, now=NOW)

MT: dict[str, Any] = {
    "event_id": "e-1",
    "ts": "2024-05-01T10:00:00+08:00",
    "kind": "mt",
    "gateway": "gw1",
    "port": "106900011234",
    "msisdn": "13800138000",
    "account": "acc_a",
    "category": "marketing",
    "text": "【Taobao】spring sale",
}
MO: dict[str, Any] = {
    "event_id": "e-2",
    "ts": "2024-05-01T10:00:00+08:00",
    "kind": "mo",
    "gateway": "gw1",
    "port": "106900011234",
    "msisdn": "13800138000",
    "text": "TD",
}
DLR: dict[str, Any] = {
    "event_id": "e-3",
    "ts": "2024-05-01T10:00:00+08:00",
    "kind": "dlr",
    "gateway": "gw1",
    "port": "106900011234",
    "msisdn": "13800138000",
    "status": "DELIVRD",
}


def enc(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(base)
    out.update(changes)
    return out


def without(base: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != field}


def reason_of(value: bytes | None, key: bytes | None = None, ctx: DecodeContext = CTX) -> str:
    with pytest.raises(DecodeError) as info:
        decode_event(value, key, ctx)
    return info.value.reason


# --- valid events -----------------------------------------------------------------------


def test_valid_mt_decodes_with_contract_defaults() -> None:
    """A valid mt decodes; segments defaults to 1 and signature/source_ip to absent."""
    ev = decode_event(enc(MT), None, CTX)
    assert isinstance(ev, MtEvent)
    assert ev.category is Category.MARKETING
    assert ev.segments == 1
    assert ev.signature is None
    assert ev.source_ip is None
    assert ev.ts == dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)


def test_valid_mo_and_dlr_decode_to_their_kinds() -> None:
    """kind selects the event type: mo carries text, dlr carries status."""
    mo = decode_event(enc(MO), None, CTX)
    dlr = decode_event(enc(DLR), None, CTX)
    assert isinstance(mo, MoEvent)
    assert mo.text == "TD"
    assert isinstance(dlr, DlrEvent)
    assert dlr.status == "DELIVRD"


def test_msisdn_is_canonicalised_on_decode() -> None:
    """An event's msisdn in +86/space/dash form is stored as the 11-digit national number."""
    ev = decode_event(enc(with_(MT, msisdn="+86 138-0013-8000")), None, CTX)
    assert ev.msisdn == "13800138000"


def test_unknown_extra_fields_are_ignored() -> None:
    """Unknown extra fields do not make an event invalid."""
    ev = decode_event(enc(with_(MT, carrier="cmcc", extra={"a": [1, 2]}, x=None)), None, CTX)
    assert isinstance(ev, MtEvent)
    assert not hasattr(ev, "carrier")


def test_optional_mt_fields_are_read() -> None:
    """signature, segments and source_ip are read when present."""
    ev = decode_event(
        enc(with_(MT, signature="【Taobao】", segments=3, source_ip="10.0.0.1")), None, CTX
    )
    assert isinstance(ev, MtEvent)
    assert ev.signature == "【Taobao】"
    assert ev.segments == 3
    assert ev.source_ip == "10.0.0.1"


# --- dead-letter reasons ----------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{not json", b"", b"{", b'{"kind": "mt",}', b'"unterminated'])
def test_invalid_json_is_reason_json(raw: bytes) -> None:
    """Bytes that are not JSON dead-letter with reason `json`."""
    assert reason_of(raw) == "json"


@pytest.mark.parametrize("raw", [b"\xff\xfe{}", b'{"text": "\xc3"}', "退订".encode("gbk")])
def test_invalid_utf8_is_reason_encoding(raw: bytes) -> None:
    """Bytes that are not UTF-8 dead-letter with reason `encoding`."""
    assert reason_of(raw) == "encoding"


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"mt"', b"42", b"null", b"true"])
def test_non_object_json_is_a_schema_error(raw: bytes) -> None:
    """JSON that is not an object is a schema dead letter (`schema:value`)."""
    assert reason_of(raw) == "schema:value"


def test_null_value_is_a_schema_error() -> None:
    """A null (tombstone) event value is a dead letter, not a crash."""
    assert reason_of(None) == "schema:value"


@pytest.mark.parametrize("kind", ["MT", "sms", "", 1, None])
def test_unknown_kind_is_schema_kind(kind: Any) -> None:
    """kind other than mt, mo, dlr is `schema:kind`."""
    assert reason_of(enc(with_(MT, kind=kind))) == "schema:kind"


def test_missing_kind_is_schema_kind() -> None:
    """An event without kind is `schema:kind`."""
    assert reason_of(enc(without(MT, "kind"))) == "schema:kind"


@pytest.mark.parametrize(
    ("base", "field"),
    [
        (MT, "event_id"),
        (MT, "ts"),
        (MT, "gateway"),
        (MT, "port"),
        (MT, "msisdn"),
        (MT, "account"),
        (MT, "category"),
        (MT, "text"),
        (MO, "text"),
        (MO, "msisdn"),
        (DLR, "status"),
    ],
)
def test_missing_required_field_is_schema_field(base: dict[str, Any], field: str) -> None:
    """A missing required field dead-letters as `schema:<field>`."""
    assert reason_of(enc(without(base, field))) == f"schema:{field}"


@pytest.mark.parametrize(
    ("base", "field", "value"),
    [
        (MT, "event_id", 12345),
        (MT, "gateway", 7),
        (MT, "msisdn", 13800138000),
        (MT, "account", 42),
        (MT, "text", 1),
        (MT, "signature", 5),
        (MO, "text", 0),
        (DLR, "status", 0),
        (MT, "category", "spam"),
        (MT, "category", 1),
        (MT, "event_id", ""),
        (MT, "event_id", None),
        (MT, "text", ["a"]),
        (MT, "msisdn", "1380013800"),
        (MT, "msisdn", "138001380001"),
        (MT, "msisdn", "1380013800x"),
        (MT, "port", "1069-0001"),
        (MT, "port", "abc"),
        (MT, "segments", 0),
    ],
)
def test_wrong_type_or_value_is_schema_field(base: dict[str, Any], field: str, value: Any) -> None:
    """A field of the wrong type (e.g. a number where a string belongs) is `schema:<field>`."""
    assert reason_of(enc(with_(base, **{field: value}))) == f"schema:{field}"


# --- ts forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2024-05-01T10:00:00+08:00", dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)),
        ("2024-05-01T02:00:00Z", dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)),
        ("2024-05-01T02:00:00.250+00:00", dt.datetime(2024, 5, 1, 2, 0, 0, 250_000, dt.UTC)),
        ("2024-04-30T22:00:00-04:00", dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)),
        (1714528800000, dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)),
        (10**12, dt.datetime(2001, 9, 9, 1, 46, 40, tzinfo=dt.UTC)),
    ],
)
def test_ts_iso_with_offset_and_epoch_ms_are_accepted(ts: Any, expected: dt.datetime) -> None:
    """ts: ISO-8601 with an offset, or integer epoch milliseconds >= 10^12."""
    assert decode_event(enc(with_(MT, ts=ts)), None, CTX).ts == expected


def test_naive_iso_ts_is_in_the_configured_timezone() -> None:
    """A naive ISO ts is read in the configured timezone (default Asia/Shanghai)."""
    raw = enc(with_(MT, ts="2024-05-01T10:00:00"))
    shanghai = decode_event(raw, None, DecodeContext(tz=SHANGHAI, now=NOW)).ts
    utc = decode_event(raw, None, DecodeContext(tz=ZoneInfo("UTC"), now=NOW)).ts
    assert shanghai == dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)
    assert utc == dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "ts",
    [
        1714528800,  # epoch seconds, < 10^12
        10**12 - 1,
        0,
        -1714528800000,
        1714528800000.0,  # a float, even if integral
        1.7145288e12,
        True,
        False,
        None,
        "1714528800000",  # digits in a string are not an integer
        "yesterday",
        "2024-05-01 10:00 CST",
        "2024-13-01T10:00:00",
        "",
        {"epoch_ms": 1714528800000},
        [2024, 5, 1],
        "1999-12-31T23:59:59+00:00",  # before 2000
        "1970-01-01T00:00:00Z",
        "2024-05-02T12:00:01+00:00",  # beyond now + 1 day of skew
        "2099-01-01T00:00:00+08:00",
        4102444800000,  # 2100 in epoch ms
        10**20,  # out of any datetime range
    ],
)
def test_other_ts_forms_are_schema_ts(ts: Any) -> None:
    """Any ts other than ISO-8601 or epoch ms >= 10^12 in a plausible range is `schema:ts`."""
    assert reason_of(enc(with_(MT, ts=ts))) == "schema:ts"


def test_future_ts_within_the_skew_is_accepted_and_beyond_is_rejected() -> None:
    """The allowed clock skew is measured against DecodeContext.now."""
    ctx = DecodeContext(tz=SHANGHAI, now=NOW, max_future_skew_seconds=3600)
    inside = (NOW + dt.timedelta(seconds=3599)).isoformat()
    outside = (NOW + dt.timedelta(seconds=3601)).isoformat()
    assert decode_event(enc(with_(MT, ts=inside)), None, ctx).ts > NOW
    assert reason_of(enc(with_(MT, ts=outside)), ctx=ctx) == "schema:ts"


# --- size -------------------------------------------------------------------------------


def test_value_larger_than_the_limit_is_too_large() -> None:
    """A value over max_event_bytes dead-letters as `too_large` (before any parsing)."""
    ctx = DecodeContext(tz=SHANGHAI, now=NOW, max_event_bytes=2048)
    big = enc(with_(MT, padding="x" * 4096))
    assert len(big) > 2048
    assert reason_of(big, ctx=ctx) == "too_large"
    assert reason_of(b"\xff" * 4096, ctx=ctx) == "too_large"


def test_value_at_the_limit_is_not_too_large() -> None:
    """A value of exactly max_event_bytes is accepted."""
    raw = enc(MT)
    ctx = DecodeContext(tz=SHANGHAI, now=NOW, max_event_bytes=len(raw))
    assert isinstance(decode_event(raw, None, ctx), MtEvent)


def test_text_longer_than_the_limit_is_rejected() -> None:
    """A message text over max_text_chars is a schema dead letter on text."""
    ctx = DecodeContext(tz=SHANGHAI, now=NOW, max_text_chars=100)
    assert reason_of(enc(with_(MT, text="好" * 101)), ctx=ctx) == "schema:text"
    assert isinstance(decode_event(enc(with_(MT, text="好" * 100)), None, ctx), MtEvent)


# --- key --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"13800138000", b"+8613800138000", b"0086 138-0013-8000", None])
def test_key_naming_the_same_msisdn_in_any_form_is_accepted(key: bytes | None) -> None:
    """The key may be absent or the same msisdn in any accepted form."""
    assert decode_event(enc(MT), key, CTX).msisdn == "13800138000"


@pytest.mark.parametrize("key", [b"13900139000", b"+8613900139000", b"not-a-number", b"\xff", b""])
def test_key_that_names_another_msisdn_is_schema_key(key: bytes) -> None:
    """A key that is not the value's msisdn is `schema:key`."""
    assert reason_of(enc(MT), key) == "schema:key"


# --- robustness -------------------------------------------------------------------------


def _decode_or_error(value: bytes | None, key: bytes | None) -> None:
    try:
        ev = decode_event(value, key, CTX)
    except DecodeError as exc:
        assert exc.reason in {"json", "encoding", "too_large"} or exc.reason.startswith("schema:")
    else:
        assert isinstance(ev, MtEvent | MoEvent | DlrEvent)


@given(st.binary(max_size=512), st.one_of(st.none(), st.binary(max_size=24)))
def test_arbitrary_bytes_decode_or_raise_decode_error(value: bytes, key: bytes | None) -> None:
    """decode_event on arbitrary bytes returns an event or raises DecodeError, nothing else."""
    _decode_or_error(value, key)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
interesting_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "mt",
            "mo",
            "dlr",
            "marketing",
            "+8613800138000",
            "13800138000",
            "2024-05-01T10:00:00",
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            10**12,
            2**63,
            -(2**63),
            253402300800000,
            "【】",
            "\u0000",
        ]
    ),
)


@given(
    st.sampled_from([MT, MO, DLR]),
    st.dictionaries(
        st.sampled_from([*MT.keys(), "status", "signature", "segments", "source_ip", "extra"]),
        interesting_values,
        max_size=4,
    ),
    st.sets(st.sampled_from(list(MT.keys())), max_size=2),
    st.one_of(st.none(), st.sampled_from([b"13800138000", b"13900139000", b"\xff"])),
)
def test_mutated_events_decode_or_raise_decode_error(
    base: dict[str, Any], changes: dict[str, Any], dropped: set[str], key: bytes | None
) -> None:
    """Valid events with fields replaced or dropped decode or raise DecodeError only."""
    obj = {k: v for k, v in with_(base, **changes).items() if k not in dropped}
    _decode_or_error(enc(obj), key)


def test_settings_reject_an_absurd_clock_skew() -> None:
    """Settings cap the future skew at ten years instead of accepting any number."""
    from pydantic import ValidationError

    from smsmon.config.settings import Settings

    with pytest.raises(ValidationError):
        Settings(max_future_skew_seconds=10**12)


def test_decode_survives_a_skew_that_overflows_datetime() -> None:
    """A skew past datetime's range decodes a valid event instead of raising OverflowError."""
    ctx = DecodeContext(tz=SHANGHAI, now=NOW, max_future_skew_seconds=10**12)
    assert isinstance(decode_event(enc(MT), None, ctx), MtEvent)


# --- reference records and keys ---------------------------------------------------------


def test_port_record_decodes_with_shared_default_false() -> None:
    """A port record without `shared` is not shared."""
    rec = decode_model(
        PortRecord,
        enc(
            {
                "port": "10690001",
                "enterprise": "91110000MA0000000X",
                "accounts": ["acc_a"],
                "categories": ["marketing", "notification"],
                "status": "active",
            }
        ),
        CTX,
    )
    assert rec.shared is False
    assert rec.status is PortStatus.ACTIVE
    assert rec.max_per_minute is None


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"port": "1069", "enterprise": "E", "status": "paused"}, "schema:status"),
        ({"port": "10a9", "enterprise": "E", "status": "active"}, "schema:port"),
        (
            {"port": "1069", "enterprise": "E", "status": "active", "categories": ["spam"]},
            "schema:categories",
        ),
        ({"port": "1069", "status": "active"}, "schema:enterprise"),
    ],
)
def test_malformed_port_record_is_a_schema_error(record: dict[str, Any], reason: str) -> None:
    """Malformed port records dead-letter with the offending field."""
    with pytest.raises(DecodeError) as info:
        decode_model(PortRecord, enc(record), CTX)
    assert info.value.reason == reason


def test_signature_record_ports_default_to_any() -> None:
    """A signature record without ports may use any port (empty list)."""
    rec = decode_model(
        SignatureRecord,
        enc({"signature": "Taobao", "enterprise": "E", "status": "revoked"}),
        CTX,
    )
    assert rec.ports == []


def test_consent_record_decodes_ts_and_status() -> None:
    """A consent record carries msisdn (canonicalised), enterprise, status and ts."""
    rec = decode_model(
        ConsentRecord,
        enc(
            {
                "msisdn": "+8613800138000",
                "enterprise": "E",
                "status": "granted",
                "ts": "2024-05-01T10:00:00",
            }
        ),
        CTX,
    )
    assert rec.msisdn == "13800138000"
    assert rec.status is ConsentStatus.GRANTED
    assert rec.ts == dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)


def test_consent_record_with_bad_status_is_schema_status() -> None:
    """Consent status other than granted/revoked is `schema:status`."""
    with pytest.raises(DecodeError) as info:
        decode_model(
            ConsentRecord,
            enc({"msisdn": "13800138000", "enterprise": "E", "status": "maybe", "ts": 10**12}),
            CTX,
        )
    assert info.value.reason == "schema:status"


def test_consent_key_is_msisdn_bar_enterprise() -> None:
    """The consent key `<msisdn>|<enterprise>` splits into canonical msisdn and enterprise."""
    assert consent_key(b"+8613800138000|ENT_A") == ("13800138000", "ENT_A")


@pytest.mark.parametrize("key", [None, b"", b"13800138000", b"13800138000|", b"123|E", b"\xff|E"])
def test_malformed_consent_key_is_schema_key(key: bytes | None) -> None:
    """A consent key without a msisdn and an enterprise is `schema:key`."""
    with pytest.raises(DecodeError) as info:
        consent_key(key)
    assert info.value.reason == "schema:key"


def test_port_key_and_signature_key_are_canonical() -> None:
    """Port keys are digits; signature keys are the normalised signature text."""
    assert port_key(b"10690001") == "10690001"
    assert signature_key("【 TAOBAO 】".encode()) == "taobao"
    for bad_port in (None, b"", b"10a9", b"\xff"):
        with pytest.raises(DecodeError):
            port_key(bad_port)
    for bad_sig in (None, b"", "【】".encode(), b"\xff"):
        with pytest.raises(DecodeError):
            signature_key(bad_sig)


# --- dead letters -----------------------------------------------------------------------


def test_dead_letter_keeps_utf8_bytes_as_text_with_reason_and_position() -> None:
    """A dead letter holds the original bytes as text, the reason, topic, partition, offset."""
    dl = dead_letter(
        reason="json",
        error="invalid JSON",
        topic="sms.events",
        partition=3,
        offset=42,
        key=b"13800138000",
        value=b"{not json",
        now=NOW,
    )
    assert (dl.reason, dl.source_topic, dl.partition, dl.offset) == ("json", "sms.events", 3, 42)
    assert dl.value_text == "{not json"
    assert dl.key_text == "13800138000"
    assert dl.value_base64 is None


def test_dead_letter_keeps_non_utf8_bytes_as_base64() -> None:
    """Bytes that are not UTF-8 are kept losslessly as base64."""
    raw = b"\xff\xfe\x00garbage"
    dl = dead_letter(
        reason="encoding",
        error="not UTF-8",
        topic="sms.events",
        partition=0,
        offset=1,
        key=b"\x80",
        value=raw,
        now=NOW,
    )
    assert dl.value_text is None
    assert dl.value_base64 is not None
    assert base64.b64decode(dl.value_base64) == raw
    assert dl.key_base64 is not None
    assert base64.b64decode(dl.key_base64) == b"\x80"


@given(st.binary(max_size=256))
def test_dead_letter_round_trips_any_bytes(raw: bytes) -> None:
    """Whatever the bytes, the dead letter lets an operator recover them exactly."""
    dl = dead_letter(
        reason="json",
        error="x",
        topic="t",
        partition=0,
        offset=0,
        key=None,
        value=raw,
        now=NOW,
    )
    recovered = (
        dl.value_text.encode("utf-8")
        if dl.value_text is not None
        else base64.b64decode(dl.value_base64 or "")
    )
    assert recovered == raw


@pytest.mark.parametrize(
    "raw",
    [b'"' * 900_000, b"\xff" * 900_000, b"\x00" * 900_000, "退订".encode() * 200_000],
    ids=["quotes", "invalid-utf8", "nul", "cjk"],
)
def test_dead_letter_of_a_huge_record_stays_small_and_names_the_original(raw: bytes) -> None:
    """A record near the broker limit gives a dead letter well under it, with size and hash."""
    dl = dead_letter(
        reason="too_large",
        error="x",
        topic="t",
        partition=0,
        offset=7,
        key=b"13800138000",
        value=raw,
        now=NOW,
    )
    wire = dl.model_dump_json(exclude_none=True).encode()
    assert len(wire) < 512 * 1024
    assert dl.truncated is True
    assert dl.original_size == len(raw)
    assert dl.original_sha256 == hashlib.sha256(raw).hexdigest()
    kept = (
        dl.value_text.encode("utf-8")
        if dl.value_text is not None
        else base64.b64decode(dl.value_base64 or "")
    )
    assert raw.startswith(kept) and len(kept) >= DEAD_LETTER_KEEP_BYTES - 3
    assert dl.key_text == "13800138000"


def test_dead_letter_of_a_small_record_is_not_marked_truncated() -> None:
    dl = dead_letter(
        reason="json", error="x", topic="t", partition=0, offset=0, key=None, value=b"{", now=NOW
    )
    assert dl.truncated is None and dl.original_size is None


def test_the_clock_is_read_at_most_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from smsmon.contract import codec

    clock = [100.0]
    monkeypatch.setattr(codec.time, "monotonic", lambda: clock[0])
    ctx = DecodeContext(tz=SHANGHAI)
    first = ctx.validation_context()
    clock[0] += 0.5
    assert ctx.validation_context() is first  # same second: same context, same `now`
    clock[0] += 0.6
    later = ctx.validation_context()
    assert later is not first and later["now"] >= first["now"]
    fixed = DecodeContext(tz=SHANGHAI, now=NOW)
    assert fixed.validation_context()["now"] == NOW


def test_a_ts_beyond_the_skew_is_refused_with_the_remembered_clock() -> None:
    ctx = DecodeContext(tz=SHANGHAI, max_future_skew_seconds=60)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    ev = {**MT, "ts": future.isoformat()}
    for _ in range(2):  # the second decode reuses the context of the first
        with pytest.raises(DecodeError) as err:
            decode_event(json.dumps(ev).encode(), None, ctx)
        assert err.value.reason == "schema:ts"
