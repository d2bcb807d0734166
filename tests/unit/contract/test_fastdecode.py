"""The hot path's msgspec decoder accepts only what the contract's pydantic models accept, and
builds the same event (smsmon/contract/fastdecode.py).

Whenever `fast_event` returns an event, pydantic's `validate_json` of the same bytes under the
same context must return an equal one: the same type, values, field order and set fields (so
`model_dump_json` and `exclude_unset` dumps agree too). Where it returns None the caller asks
pydantic, so only this direction can change an answer. The simulator's own events must take
the fast path, or the speed-up is gone without a failure anywhere else.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from smsmon.contract.codec import (
    DecodeContext,
    DecodeError,
    _validate_event,
    decode_event,
    route_event,
)
from smsmon.contract.fastdecode import fast_event
from smsmon.contract.times import to_ms

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 10, 20, 2, 0, tzinfo=dt.UTC)
CTX = DecodeContext(tz=ZoneInfo("Asia/Shanghai"), now=NOW, max_text_chars=50)
VCTX = CTX.validation_context()

MT = {
    "schema_version": 1,
    "event_id": "gw1-000012345678",
    "ts": "2026-10-20T10:00:00.123+08:00",
    "gateway": "gw-bj-1",
    "port": "106900012345",
    "msisdn": "13812345678",
    "kind": "mt",
    "account": "acct-17",
    "category": "marketing",
    "text": "【淘宝】双11大促，全场五折起，退订回T",
    "signature": "【淘宝】",
    "segments": 1,
    "source_ip": "10.0.0.1",
}
MO = {k: MT[k] for k in ("event_id", "ts", "gateway", "port", "msisdn")} | {
    "kind": "mo",
    "text": "TD",
}
DLR = {k: MT[k] for k in ("event_id", "ts", "gateway", "port", "msisdn")} | {
    "kind": "dlr",
    "status": "DELIVRD",
}


def same(fast: BaseModel, slow: BaseModel) -> None:
    assert type(fast) is type(slow)
    assert fast == slow
    assert list(fast.__dict__) == list(slow.__dict__)
    assert {k: type(v) for k, v in fast.__dict__.items()} == {
        k: type(v) for k, v in slow.__dict__.items()
    }
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_dump_json(exclude_unset=True) == slow.model_dump_json(exclude_unset=True)
    assert hash(fast) == hash(slow)


def check(raw: bytes) -> BaseModel | None:
    """fast_event's answer, after asserting that pydantic agrees with it."""
    fast = fast_event(raw, VCTX)
    if fast is not None:
        slow = _validate_event(raw, VCTX)  # raises if pydantic refuses what msgspec took
        same(fast, slow)
    return fast


@pytest.mark.parametrize("template", [MT, MO, DLR], ids=["mt", "mo", "dlr"])
def test_a_typical_event_takes_the_fast_path_with_pydantics_answer(
    template: dict[str, Any],
) -> None:
    raw = json.dumps(template, ensure_ascii=False).encode()
    assert check(raw) is not None
    minimal = {k: v for k, v in template.items() if k not in ("schema_version", "source_ip")}
    assert check(json.dumps(minimal).encode()) is not None


def test_the_simulators_events_take_the_fast_path() -> None:
    from bench.traffic import SPAN_S, simulation, span_start, take_records

    start = span_start(NOW)
    sim = simulation(3, start, SPAN_S, 2.0, 500, "heavy")
    records, _ = take_records(sim, 2_000)
    ctx = DecodeContext(tz=ZoneInfo("Asia/Shanghai"), now=start + dt.timedelta(days=1))
    vctx = ctx.validation_context()
    events = [v for kind, _, v in records if kind == "event"]
    assert len(events) > 1_000
    for raw in events:
        fast = fast_event(raw, vctx)
        assert fast is not None, raw
        same(fast, _validate_event(raw, vctx))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("segments", "2"),  # lax-mode str -> int: pydantic takes it, msgspec does not
        ("segments", 2.0),
        ("segments", True),  # lax mode: True is 1
        ("schema_version", "1"),
        ("port", 1069001),  # an integer port: both take it
        ("ts", 1_792_000_000_000),  # epoch ms
        ("ts", "2026-10-20T10:00:00"),  # naive: the context's timezone
        ("msisdn", "+86 138-1234-5678"),
        ("signature", None),
        ("source_ip", None),
        ("schema_version", 10**30),
        ("extra", {"nested": [1, 2, None]}),
    ],
)
def test_values_either_path_takes_decode_to_pydantics_event(field: str, value: Any) -> None:
    raw = json.dumps(MT | {field: value}).encode()
    slow = _validate_event(raw, VCTX)
    same(decode_event(raw, None, CTX), slow)
    check(raw)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("event_id", "", "schema:event_id"),
        ("event_id", "a\x00b", "schema:event_id"),
        ("gateway", "x" * 201, "schema:gateway"),
        ("text", "x" * 51, "schema:text"),
        ("text", "a\x00", "schema:text"),
        ("segments", 0, "schema:segments"),
        ("segments", 256, "schema:segments"),
        ("ts", "2026-10-22T10:00:00+08:00", "schema:ts"),  # beyond the allowed skew
        ("ts", "1999-12-31T23:00:00+00:00", "schema:ts"),
        ("ts", 12345, "schema:ts"),
        ("ts", True, "schema:ts"),
        ("msisdn", "12345", "schema:msisdn"),
        ("msisdn", 13812345678, "schema:msisdn"),
        ("port", "10a69", "schema:port"),
        ("port", False, "schema:port"),
        ("category", "spam", "schema:category"),
        ("kind", "xx", "schema:kind"),
        ("signature", "x" * 201, "schema:signature"),
        ("source_ip", "x" * 65, "schema:source_ip"),
        ("account", None, "schema:account"),
    ],
)
def test_what_the_contract_refuses_the_fast_path_refuses(
    field: str, value: Any, reason: str
) -> None:
    raw = json.dumps(MT | {field: value}).encode()
    assert fast_event(raw, VCTX) is None
    with pytest.raises(DecodeError) as err:
        decode_event(raw, None, CTX)
    assert err.value.reason == reason


def test_missing_fields_and_bad_bytes_go_to_pydantic_for_the_reason() -> None:
    for drop in MT:
        if drop in ("schema_version", "signature", "segments", "source_ip"):
            continue
        raw = json.dumps({k: v for k, v in MT.items() if k != drop}).encode()
        assert fast_event(raw, VCTX) is None, drop
        with pytest.raises(DecodeError):
            decode_event(raw, None, CTX)
    for raw in (b"", b"{", b"[]", b"null", b'{"kind":"mt"}x', b"\xff\xfe", b'{"a":NaN}'):
        assert fast_event(raw, VCTX) is None
        with pytest.raises(DecodeError):
            decode_event(raw, None, CTX)


# -- generated records: whatever msgspec takes, pydantic takes, equal -----------------------

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60
) | st.sampled_from(["", "\x00", "TD", "退订", "x" * 200, "x" * 201])
_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_values: dict[str, st.SearchStrategy[Any]] = {
    "schema_version": st.sampled_from([1, 2, 0, -1, "1", 1.0, None, True]) | _scalar,
    "event_id": _text | _scalar,
    "ts": st.sampled_from(
        [
            "2026-10-20T10:00:00+08:00",
            "2026-10-20T10:00:00",
            "2026-10-20 10:00:00.5Z",
            "2026-10-21T09:59:59+08:00",
            "2026-10-21T10:00:01+08:00",
            "2000-01-01T07:59:59+08:00",
            "2000-01-01T00:00:00",
            "20261020T100000",
            1_792_000_000_000,
            10**12 - 1,
            10**16,
            1_792_000_000_000.5,
        ]
    )
    | _scalar,
    "gateway": _text | _scalar,
    "port": st.sampled_from(["106900012345", " 1069 ", "12", "1" * 21, "1" * 22, 1069, -1069])
    | _scalar,
    "msisdn": st.sampled_from(
        ["13812345678", "+8613812345678", "008613812345678", "86 13812345678", "1381234567"]
    )
    | _scalar,
    "kind": st.sampled_from(["mt", "mo", "dlr", "MT", ""]) | _scalar,
    "account": _text | _scalar,
    "category": st.sampled_from(["marketing", "notification", "verification", "Marketing"])
    | _scalar,
    "text": _text | _scalar,
    "signature": _text | _scalar,
    "segments": st.sampled_from([1, 255, 256, 0, "3", 2.0]) | _scalar,
    "source_ip": _text | _scalar,
    "status": _text | _scalar,
    "other": _scalar,
}


@st.composite
def records(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from([MT, MO, DLR]))
    rec = dict(base)
    for name in draw(st.lists(st.sampled_from(sorted(_values)), max_size=4)):
        if draw(st.booleans()):
            rec[name] = draw(_values[name])
        else:
            rec.pop(name, None)
    raw = json.dumps(rec, ensure_ascii=draw(st.booleans())).encode()
    if draw(st.integers(0, 9)) == 0:  # byte-level damage now and then
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        raw = raw[:at] + draw(st.binary(max_size=3)) + raw[at + 1 :]
    return raw


@settings(max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_whatever_the_fast_path_takes_pydantic_takes_equal(raw: bytes) -> None:
    fast = fast_event(raw, VCTX)
    try:
        slow = _validate_event(raw, VCTX)
    except DecodeError:
        assert fast is None, raw
        return
    except ValidationError:  # pragma: no cover - _validate_event maps these
        raise
    if fast is not None:
        same(fast, slow)


# -- route_event: what the origin of a re-keyed record reads ----------------------------


@settings(max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_the_route_of_an_event_is_its_decoded_msisdn_and_time(raw: bytes) -> None:
    """Whatever the full decode accepts, `route_event` places by the same msisdn and event
    time (or declines, and the caller decodes fully): a re-keyed record goes where a full
    decode would have sent it, and its origin's markers carry the same time."""
    routed = route_event(raw, None, CTX)
    try:
        ev = decode_event(raw, None, CTX)
    except DecodeError:
        return  # invalid: dead-lettered at its origin (declined) or at its home (routed)
    if routed is not None:
        assert routed == (ev.msisdn, to_ms(ev.ts)), raw


def test_a_typical_event_is_routed_without_a_full_decode() -> None:
    for template in (MT, MO, DLR):
        raw = json.dumps(template, ensure_ascii=False).encode()
        assert route_event(raw, None, CTX) == (
            "13812345678",
            to_ms(decode_event(raw, None, CTX).ts),
        )
        # from the key: the value's msisdn is not read (the home's full decode checks it)
        assert route_event(raw, "13900000000", CTX) == (
            "13900000000",
            route_event(raw, None, CTX)[1],
        )  # type: ignore[index]


def test_what_cannot_be_routed_cheaply_is_declined() -> None:
    ok = dict(MT)
    for bad in (
        {**ok, "ts": "yesterday"},
        {**ok, "ts": "2099-01-01T00:00:00+08:00"},  # beyond the allowed clock skew
        {**ok, "msisdn": "not a number"},
        {k: v for k, v in ok.items() if k != "ts"},
        {k: v for k, v in ok.items() if k != "msisdn"},
    ):
        assert route_event(json.dumps(bad).encode(), None, CTX) is None, bad
    assert route_event(b"{not json", None, CTX) is None
    assert route_event(None, "13812345678", CTX) is None  # a tombstone
    big = json.dumps({**ok, "text": "x" * (CTX.max_event_bytes + 1)}).encode()
    assert route_event(big, "13812345678", CTX) is None  # too large to forward
