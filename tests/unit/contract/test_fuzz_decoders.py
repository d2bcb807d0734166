"""Property tests and a bounded fuzz run over the wire decoders.

Whatever bytes arrive on `sms.events` or `sms.ref.*`, the decoders either return a valid model
or raise `DecodeError` whose `reason` is one of a bounded set of labels (the dead-letter
reasons of docs/contract.md). Nothing else may escape: an escaping exception would be a
`processing` dead letter at best, and an unbounded reason label would blow up the
`smsmon_invalid_events_total` metric.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from smsmon.contract.codec import (
    DecodeContext,
    DecodeError,
    consent_key,
    decode_event,
    decode_model,
    port_key,
    signature_key,
)
from smsmon.contract.models import (
    Complaint,
    ConsentRecord,
    DlrEvent,
    MoEvent,
    MtEvent,
    PortRecord,
    SignatureRecord,
)

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 10, 20, 2, 0, tzinfo=dt.UTC)
CTX = DecodeContext(tz=ZoneInfo("Asia/Shanghai"), now=NOW)
BASE_REASONS = frozenset(
    {"json", "encoding", "too_large", "schema:value", "schema:kind", "schema:key"}
)
EVENT_FIELDS = set(MtEvent.model_fields) | set(MoEvent.model_fields) | set(DlrEvent.model_fields)
EVENT_REASONS = BASE_REASONS | {f"schema:{f}" for f in EVENT_FIELDS}
REFERENCE_MODELS: tuple[type[BaseModel], ...] = (
    PortRecord,
    SignatureRecord,
    ConsentRecord,
    Complaint,
)


def model_reasons(model: type[BaseModel]) -> frozenset[str]:
    return BASE_REASONS | {f"schema:{f}" for f in model.model_fields}


MT: dict[str, Any] = {
    "event_id": "ev-1",
    "ts": "2026-10-20T10:00:00+08:00",
    "kind": "mt",
    "gateway": "gw-1",
    "port": "106600000123",
    "msisdn": "13800138000",
    "account": "acct-0",
    "category": "marketing",
    "text": "【淘宝】双11预售开启,回T退订",
    "signature": "淘宝",
    "segments": 1,
    "source_ip": "10.0.0.1",
}
MO: dict[str, Any] = {
    "event_id": "ev-2",
    "ts": 1_792_461_600_000,
    "kind": "mo",
    "gateway": "gw-mo",
    "port": "10660000",
    "msisdn": "+86 138-0013-8000",
    "text": "退订",
}
DLR: dict[str, Any] = {
    "event_id": "ev-3",
    "ts": "2026-10-20T10:00:01",
    "kind": "dlr",
    "gateway": "gw-2",
    "port": "10690001",
    "msisdn": "8613800138000",
    "status": "DELIVRD",
}
PORT: dict[str, Any] = {
    "port": "10660000",
    "enterprise": "91330100MA2AAAAA1X",
    "accounts": ["acct-0"],
    "categories": ["marketing", "notification"],
    "status": "active",
    "shared": False,
    "max_per_minute": 600,
}
SIGNATURE: dict[str, Any] = {
    "signature": "淘宝",
    "enterprise": "91330100MA2AAAAA1X",
    "ports": ["10660000"],
    "status": "active",
}
CONSENT: dict[str, Any] = {
    "msisdn": "13800138000",
    "enterprise": "91330100MA2AAAAA1X",
    "status": "revoked",
    "ts": "2026-10-19T10:00:00+08:00",
    "source": "mo",
}
COMPLAINT: dict[str, Any] = {
    "complaint_id": "c-1",
    "ts": "2026-10-20T10:00:00+08:00",
    "msisdn": "13800138000",
    "port": "10660000",
    "signature": "淘宝",
    "text": "骚扰短信",
    "category": "marketing",
}
VALID_EVENTS = (MT, MO, DLR)
VALID_RECORDS: dict[type[BaseModel], dict[str, Any]] = {
    PortRecord: PORT,
    SignatureRecord: SIGNATURE,
    ConsentRecord: CONSENT,
    Complaint: COMPLAINT,
}


def enc(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", errors="surrogatepass")


def event_outcome(value: bytes | None, key: bytes | None, ctx: DecodeContext = CTX) -> str:
    """'ok' or the DecodeError reason; anything else escaping fails the test."""
    try:
        ev = decode_event(value, key, ctx)
    except DecodeError as exc:
        assert exc.reason in EVENT_REASONS, (exc.reason, exc.error)
        assert isinstance(exc.error, str) and exc.error
        return exc.reason
    # what passed is valid by the contract
    assert len(ev.msisdn) == 11 and ev.msisdn.isascii() and ev.msisdn.isdigit()
    assert ev.msisdn.startswith("1")
    assert ev.port.isascii() and ev.port.isdigit() and 3 <= len(ev.port) <= 21
    assert dt.datetime(2000, 1, 1, tzinfo=dt.UTC) <= ev.ts
    assert ev.ts <= (ctx.now or NOW) + dt.timedelta(seconds=ctx.max_future_skew_seconds)
    assert ev.ts.tzinfo is not None
    text = getattr(ev, "text", "")
    assert "\x00" not in text and len(text) <= ctx.max_text_chars
    assert "\x00" not in ev.event_id and 1 <= len(ev.event_id) <= 200
    assert value is not None and len(value) <= ctx.max_event_bytes
    return "ok"


def model_outcome(model: type[BaseModel], value: bytes | None) -> str:
    try:
        decode_model(model, value, CTX)
    except DecodeError as exc:
        assert exc.reason in model_reasons(model), (model.__name__, exc.reason, exc.error)
        return exc.reason
    return "ok"


def key_outcome(fn: Any, key: bytes | None) -> str:
    try:
        fn(key)
    except DecodeError as exc:
        assert exc.reason == "schema:key", exc.reason
        return exc.reason
    return "ok"


# -- strategies --------------------------------------------------------------------------------

FAR_TIMESTAMPS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",
            "1970-01-01T00:00:00Z",
            "1999-12-31T23:59:59+00:00",
            "9999-12-31T23:59:59-14:00",
            "2999-01-01T00:00:00+08:00",
            "2026-10-20T10:00:00+25:00",
            "2026-13-01T00:00:00",
            "",
            "now",
        ]
    ),
    st.datetimes(  # naive: read in the configured timezone
        min_value=dt.datetime(1, 1, 2),  # noqa: DTZ001
        max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.none(),
    ).map(lambda d: d.isoformat()),
    st.floats(allow_nan=True, allow_infinity=True),
)
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.text(alphabet="0123456789+- ", max_size=16),
    st.just("\x00"),
    st.just("a\x00b"),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUES = st.one_of(JSON_VALUES, FAR_TIMESTAMPS, st.sampled_from(["mt", "mo", "dlr", "fax"]))
KEYS = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [b"13800138000", b"+8613800138000", b"13900000000", b"13800138000|x", b"\x00", b""]
    ),
)


@st.composite
def mutated_object(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A valid record with fields dropped, retyped and added at random."""
    d = dict(base)
    for name in list(d):
        action = draw(st.sampled_from(["keep", "keep", "drop", "retype"]))
        if action == "drop":
            d.pop(name)
        elif action == "retype":
            d[name] = draw(FIELD_VALUES)
    extra = draw(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=3))
    for k, v in extra.items():
        d.setdefault(k, v)
    return d


# -- properties --------------------------------------------------------------------------------


@given(value=st.one_of(st.none(), st.binary(max_size=2048)), key=KEYS)
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_never_escape_decode_event(value: bytes | None, key: bytes | None) -> None:
    event_outcome(value, key)


@given(base=st.sampled_from(VALID_EVENTS), data=st.data(), key=KEYS)
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_json_with_random_types_per_field_gives_bounded_reasons(
    base: dict[str, Any], data: st.DataObject, key: bytes | None
) -> None:
    obj = data.draw(mutated_object(base))
    event_outcome(enc(obj), key)


@given(obj=JSON_VALUES)
@settings(max_examples=200, deadline=None)
def test_any_json_document_gives_bounded_reasons(obj: Any) -> None:
    raw = enc(obj)
    event_outcome(raw, None)
    for model in REFERENCE_MODELS:
        model_outcome(model, raw)


@given(
    base=st.sampled_from(VALID_EVENTS),
    field=st.sampled_from(["event_id", "gateway", "port", "msisdn", "text", "status", "account"]),
    size=st.integers(min_value=0, max_value=300_000),
    ch=st.sampled_from(["x", "\x00", "汉", "\U0001f600", "\\", '"', "\n"]),
)
@settings(max_examples=60, deadline=None)
def test_huge_and_nul_texts_are_too_large_or_schema_errors(
    base: dict[str, Any], field: str, size: int, ch: str
) -> None:
    obj = dict(base)
    obj[field] = ch * size
    raw = enc(obj)
    reason = event_outcome(raw, None)
    if len(raw) > CTX.max_event_bytes:
        assert reason == "too_large"
    elif ch == "\x00" and size and field in base and field in ("event_id", "gateway", "text"):
        assert reason == f"schema:{field}"


@given(base=st.sampled_from(VALID_EVENTS), ts=FAR_TIMESTAMPS)
@settings(max_examples=300, deadline=None)
def test_far_timestamps_are_schema_ts_or_accepted_within_bounds(
    base: dict[str, Any], ts: Any
) -> None:
    obj = dict(base, ts=ts)
    reason = event_outcome(enc(obj), None)  # accepted ones are bounds-checked there
    assert reason in ("ok", "schema:ts")


@given(base=st.sampled_from(VALID_EVENTS), key=KEYS)
@settings(max_examples=300, deadline=None)
def test_keys_naming_another_msisdn_are_schema_key(base: dict[str, Any], key: bytes | None) -> None:
    reason = event_outcome(enc(base), key)
    if key is None or key in (b"13800138000", b"+8613800138000"):
        assert reason == "ok"
    else:
        assert reason in ("ok", "schema:key")
        if reason == "ok":  # only another spelling of the same msisdn may pass
            assert key is not None
            assert "".join(c for c in key.decode() if c.isdigit()).endswith("13800138000")


@given(model=st.sampled_from(REFERENCE_MODELS), data=st.data())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reference_records_with_random_types_give_bounded_reasons(
    model: type[BaseModel], data: st.DataObject
) -> None:
    obj = data.draw(mutated_object(VALID_RECORDS[model]))
    model_outcome(model, enc(obj))


@given(
    model=st.sampled_from(REFERENCE_MODELS), value=st.one_of(st.none(), st.binary(max_size=1024))
)
@settings(max_examples=300, deadline=None)
def test_reference_records_from_arbitrary_bytes(
    model: type[BaseModel], value: bytes | None
) -> None:
    model_outcome(model, value)


@given(key=KEYS)
@settings(max_examples=400, deadline=None)
def test_reference_keys_raise_only_schema_key(key: bytes | None) -> None:
    assert key_outcome(port_key, key) in ("ok", "schema:key")
    assert key_outcome(signature_key, key) in ("ok", "schema:key")
    assert key_outcome(consent_key, key) in ("ok", "schema:key")


@given(
    msisdn=st.from_regex(r"1[0-9]{10}", fullmatch=True),
    enterprise=st.text(min_size=1, max_size=50).filter(lambda s: "|" not in s),
)
@settings(max_examples=200, deadline=None)
def test_consent_key_roundtrips_valid_pairs(msisdn: str, enterprise: str) -> None:
    assume(not any(0xD800 <= ord(c) <= 0xDFFF for c in enterprise))
    assert consent_key(f"{msisdn}|{enterprise}".encode()) == (msisdn, enterprise)


def test_valid_examples_decode() -> None:
    """The bases of the mutations are themselves valid (so mutations explore near them)."""
    for base in VALID_EVENTS:
        assert event_outcome(enc(base), b"13800138000") == "ok", base
    for model, base in VALID_RECORDS.items():
        assert model_outcome(model, enc(base)) == "ok", model
    assert port_key(b"10660000") == "10660000"
    assert signature_key("【淘宝】".encode()) == "淘宝"


def test_a_record_over_the_size_limit_is_too_large_before_anything_else() -> None:
    """Several MB of anything (even invalid UTF-8 or broken JSON) is `too_large`."""
    for raw in (
        enc(dict(MT, text="x" * 3_000_000)),
        b"\xff" * 3_000_000,
        b"{" * 3_000_000,
        b"[" * 65_537,
    ):
        assert event_outcome(raw, None) == "too_large"
        for model in REFERENCE_MODELS:
            assert model_outcome(model, raw) == "too_large"


# -- bounded fuzz run --------------------------------------------------------------------------

_SPLICE = [
    b"\x00",
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b'"',
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"99999999999999999999999",
    b'"mt"',
    b'"mo"',
    b'"dlr"',
    "退订".encode(),
    "【】".encode(),
    b"13900000000",
]


def _mutate_bytes(rng: random.Random, raw: bytes) -> bytes:
    b = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:  # flip a bit
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # random byte
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:  # insert a token
            b[pos:pos] = rng.choice(_SPLICE)
        elif op == 3 and b:  # delete a run
            del b[pos : pos + rng.randint(1, 8)]
        elif op == 4:  # duplicate a run
            j = rng.randrange(len(b) + 1)
            b[pos:pos] = b[j : j + rng.randint(1, 16)]
        else:  # truncate
            del b[pos:]
    return bytes(b)


def _random_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            0,
            -1,
            10**12,
            2**63,
            10**40,
            1.5,
            "",
            "\x00",
            "x" * rng.choice([1, 200, 201, 4_001, 70_000]),
            "13800138000",
            13800138000,
            "+86 138 0013 8000",
            "9999-12-31T23:59:59+14:00",
            "1900-01-01T00:00:00",
            [],
            {},
            ["mt"],
            {"kind": "mt"},
            "mt",
            "mo",
            "dlr",
            "marketing",
            "revoked",
            "suspended",
        ]
    )


def _mutate_object(rng: random.Random, base: dict[str, Any]) -> dict[str, Any]:
    d = dict(base)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(3)
        name = rng.choice([*d, "extra", "kind", "ts"]) if d else "kind"
        if op == 0:
            d.pop(name, None)
        elif op == 1:
            d[name] = _random_value(rng)
        else:
            d[f"x{rng.randrange(100)}"] = _random_value(rng)
    return d


def test_fuzz_20000_mutations_of_valid_records() -> None:
    """20,000 random byte- and field-level mutations: only bounded DecodeErrors escape."""
    rng = random.Random(20261111)
    seen: dict[str, int] = {}
    valid_raw = [(enc(b), b) for b in VALID_EVENTS]
    ref_raw = [(m, enc(b), b) for m, b in VALID_RECORDS.items()]
    for i in range(20_000):
        key = rng.choice([None, b"13800138000", b"13900000000", b"\xff", b"13800138000|e"])
        if i % 4 == 3:  # reference records and their keys
            model, raw, base = rng.choice(ref_raw)
            value = _mutate_bytes(rng, raw) if i % 8 == 3 else enc(_mutate_object(rng, base))
            reason = model_outcome(model, value)
            key_outcome(port_key, key)
            key_outcome(signature_key, key)
            key_outcome(consent_key, key)
        else:
            raw, base = rng.choice(valid_raw)
            value = _mutate_bytes(rng, raw) if i % 2 else enc(_mutate_object(rng, base))
            reason = event_outcome(value, key)
        seen[reason] = seen.get(reason, 0) + 1
    # the run explored the space: both acceptance and most kinds of rejection happened
    assert seen.get("ok", 0) > 100
    for reason in ("json", "encoding", "too_large", "schema:kind", "schema:key", "schema:ts"):
        assert seen.get(reason, 0) > 0, (reason, seen)
