"""Faster forms of shared rule code give exactly what the plain forms gave.

Each speed-up in the code shared by the live worker and the audit is compared here with a
verbatim copy of the code it replaced (or with the standard library), on generated inputs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import unicodedata
import uuid
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smsmon.contract.canonical import (
    CanonicalError,
    MsisdnHasher,
    canonical_msisdn,
    canonical_signature,
    compact_json,
    extract_signature,
)
from smsmon.contract.models import Alert, Category, MtEvent, Severity, check_ts
from smsmon.rules import catalog as R
from smsmon.rules.consent import RecentSender, RecentSenders
from smsmon.rules.content.checks import ContentChecker
from smsmon.rules.content.classifier import MarketingClassifier
from smsmon.rules.content.hours import AllowedHours
from smsmon.rules.content.optout import _DROPPED_CATEGORIES, has_optout, normalise_for_optout
from smsmon.rules.engine import message_alert
from smsmon.rules.traffic import aggregate_alert_id

pytestmark = pytest.mark.unit

TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)


# -- alert ids and msisdn hashes -----------------------------------------------------------------


@given(rule=TEXT, event_id=TEXT)
def test_alert_id_is_the_standard_uuid5(rule: str, event_id: str) -> None:
    want = str(uuid.uuid5(R.ALERT_NAMESPACE, f"{rule}|{event_id}"))
    assert R.alert_id(rule, event_id) == want


@given(rule=TEXT, subject_type=TEXT, subject=TEXT, start=st.integers())
def test_aggregate_alert_id_is_the_standard_uuid5(
    rule: str, subject_type: str, subject: str, start: int
) -> None:
    name = f"{rule}|{subject_type}|{subject}|{start}"
    want = str(uuid.uuid5(R.ALERT_NAMESPACE, name))
    assert aggregate_alert_id(rule, subject_type, subject, start) == want


@given(secret=st.binary(min_size=1, max_size=80), key_id=TEXT, msisdn=TEXT)
def test_msisdn_hash_is_hmac_sha256(secret: bytes, key_id: str, msisdn: str) -> None:
    want = hmac.new(secret, msisdn.encode(), hashlib.sha256).hexdigest()
    assert MsisdnHasher(secret, key_id)(msisdn) == f"{key_id}:{want}"


# -- canonical forms -------------------------------------------------------------------------------

_MSISDN_NOISE = re.compile(r"[\s\-]")
_MSISDN = re.compile(r"1\d{10}")


def canonical_msisdn_before(raw: object) -> str:
    if not isinstance(raw, str):
        raise CanonicalError(f"msisdn must be a string, got {type(raw).__name__}")
    s = _MSISDN_NOISE.sub("", raw)
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    elif len(s) == 13 and s.startswith("86"):
        s = s[2:]
    if not _MSISDN.fullmatch(s) or not s.isascii():
        raise CanonicalError("msisdn is not an 11-digit mobile number (1xxxxxxxxxx)")
    return s


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except Exception as exc:  # the same exception (type and message) is the point
        return "error", (type(exc), str(exc))


@settings(max_examples=500)
@given(
    raw=st.one_of(
        TEXT,
        st.from_regex(r"\A(\+86|0086|86 ?)?1[0-9]{10}\Z"),
        st.from_regex(r"\A[ \t]?(\+|00|0|\+0)?(86|68|8)?[ \-\t]{0,2}[01][0-9]{9,11}[ ]?\Z"),
        st.text(alphabet="0123456789١٢٣ +-\t", max_size=16),
        st.integers(),
        st.none(),
    )
)
def test_canonical_msisdn_is_unchanged(raw: Any) -> None:
    assert outcome(canonical_msisdn, raw) == outcome(canonical_msisdn_before, raw)


@given(signature=st.one_of(st.none(), TEXT), text=TEXT)
def test_extract_signature_is_unchanged(signature: str | None, text: str) -> None:
    for body in (text, f"【{signature or ''}】{text}", f"{text}【{signature or ''}】 "):
        got = extract_signature(signature, body)
        leading = re.match(r"^\s*【([^【】]*)】", body) or re.search(r"【([^【】]*)】\s*$", body)
        if signature is not None:
            assert got == canonical_signature(signature)
        else:
            assert got == (canonical_signature(leading.group(1)) if leading else None)


# -- ts parsing ------------------------------------------------------------------------------------

_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def parse_ts_before(value: object, tz: ZoneInfo, now: dt.datetime | None, skew: float) -> Any:
    """models.parse_ts as it was (its context spelled out)."""
    if isinstance(value, bool):
        raise ValueError("ts must be ISO-8601 text or integer epoch milliseconds")
    if isinstance(value, int):
        if value < 10**12:
            raise ValueError("integer ts must be epoch milliseconds (>= 10^12)")
        try:
            ts = dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError("ts epoch milliseconds out of range") from exc
    elif isinstance(value, str):
        if len(value) > 40:
            raise ValueError("ts text too long for ISO-8601")
        try:
            ts = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("ts is not ISO-8601") from exc
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=tz)
    elif isinstance(value, dt.datetime) and value.tzinfo is not None:
        ts = value
    else:
        raise ValueError("ts must be ISO-8601 text or integer epoch milliseconds")
    if ts < _EARLIEST:
        raise ValueError("ts is before 2000-01-01")
    if now is not None:
        try:
            latest = now + dt.timedelta(seconds=skew)
        except OverflowError:
            latest = dt.datetime.max.replace(tzinfo=dt.UTC)
        if ts > latest:
            raise ValueError("ts is in the future beyond the allowed clock skew")
    return ts


ZONES = st.sampled_from(
    [
        ZoneInfo("Asia/Shanghai"),
        ZoneInfo("UTC"),
        ZoneInfo("Pacific/Kiritimati"),
        ZoneInfo("Etc/GMT+12"),
    ]
)
TS_VALUES = st.one_of(
    st.datetimes(
        min_value=dt.datetime(1, 1, 2),  # noqa: DTZ001
        max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001
        timezones=st.one_of(
            st.none(),
            st.sampled_from([dt.UTC, ZoneInfo("Asia/Shanghai")]),
            st.integers(-1439, 1439).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
        ),
    ).map(lambda d: d.isoformat()),
    st.datetimes(
        min_value=dt.datetime(1999, 12, 30),  # noqa: DTZ001
        max_value=dt.datetime(2000, 1, 2),  # noqa: DTZ001
        timezones=st.integers(-1439, 1439).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
    ).flatmap(lambda d: st.sampled_from([d, d.isoformat()])),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from(["", "now", "2026-13-01", "x" * 41, True, False, None, 1.5, [1]]),
    st.text(max_size=45),
)


@settings(max_examples=500)
@given(
    value=TS_VALUES,
    tz=ZONES,
    now=st.one_of(st.none(), st.datetimes(timezones=st.just(dt.UTC))),
    skew=st.sampled_from([0.0, 1.0, 86_400.0, 86_400, 1e12, 1e300]),
)
def test_check_ts_is_the_former_parse_ts(
    value: Any, tz: ZoneInfo, now: dt.datetime | None, skew: float
) -> None:
    got = outcome(check_ts, value, tz, now, skew)
    want = outcome(parse_ts_before, value, tz, now, skew)
    assert got == want
    if got[0] == "ok":
        assert got[1].tzinfo == want[1].tzinfo and got[1].isoformat() == want[1].isoformat()


# -- opt-out ---------------------------------------------------------------------------------------


def normalise_for_optout_before(text: str) -> str:
    s = unicodedata.normalize("NFKC", text).casefold()
    return "".join(
        ch
        for ch in s
        if not ch.isspace()
        and unicodedata.category(ch) not in _DROPPED_CATEGORIES
        and not unicodedata.category(ch).startswith("P")
    )


def test_optout_normalisation_is_unchanged_for_every_character() -> None:
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    want = normalise_for_optout_before(every)
    assert normalise_for_optout(every) == want
    assert normalise_for_optout(every) == want  # from the filled table


@given(text=st.text(max_size=60))
def test_optout_normalisation_is_unchanged(text: str) -> None:
    assert normalise_for_optout(text) == normalise_for_optout_before(text)


@pytest.mark.parametrize("cache_size", [0, 1, 3, 50_000])
def test_cached_optout_check_equals_has_optout(cache_size: int) -> None:
    checker = ContentChecker(MarketingClassifier.load(), AllowedHours(), cache_size=cache_size)
    texts = ["回T退订", "满300减50", "拒收请回复R", "回复退订成功", "Reply STOP", "", "回TD退"]
    for _ in range(3):
        for text in texts + [t + "!" for t in texts]:
            assert checker.optout(text) is has_optout(text)
            assert len(checker._optout) <= cache_size


# -- unsubscribe attribution memory ----------------------------------------------------------------


def record_before(r: RecentSenders, sender: RecentSender, capacity: int, horizon_ms: int) -> bool:
    old = next((e for e in r.entries if e.port == sender.port), None)
    if old is not None:
        if old.ts_ms > sender.ts_ms:
            return False
        if old.marketing_ms > sender.marketing_ms:
            sender = RecentSender(
                sender.port, sender.enterprise, sender.ts_ms, sender.signature, old.marketing_ms
            )
        if old == sender:
            return False
    keep = [e for e in r.entries if e.port != sender.port and sender.ts_ms - e.ts_ms <= horizon_ms]
    keep.append(sender)
    keep.sort(key=lambda e: e.ts_ms, reverse=True)
    r.entries = keep[:capacity]
    return True


SENDERS = st.builds(
    RecentSender,
    port=st.sampled_from(["1066", "1069", "10690000", "1"]),
    enterprise=st.sampled_from(["A", "B"]),
    ts_ms=st.integers(0, 50),
    signature=st.sampled_from([None, "s", "t"]),
    marketing_ms=st.sampled_from([0, 10, 30]),
)


@settings(max_examples=400)
@given(
    senders=st.lists(SENDERS, max_size=12),
    capacity=st.integers(0, 4),
    horizon=st.integers(0, 60),
)
def test_recent_senders_record_is_unchanged(
    senders: list[RecentSender], capacity: int, horizon: int
) -> None:
    got, want = RecentSenders(), RecentSenders()
    for s in senders:
        assert got.record(s, capacity, horizon) == record_before(want, s, capacity, horizon)
        assert got.entries == want.entries


# -- per-message alerts ----------------------------------------------------------------------------

EVENT = MtEvent(
    event_id="ev-1",
    ts="2026-10-20T10:00:00.250000+08:00",
    kind="mt",
    gateway="gw-1",
    port="106900011234",
    msisdn="13800138000",
    account="acct-0",
    category="marketing",
    text="【淘宝】双11,回T退订",
)


def assert_same_alert(got: Alert, want: Alert) -> None:
    assert got == want
    assert list(got.__dict__) == list(want.__dict__)
    assert got.model_fields_set == want.model_fields_set
    assert got.__pydantic_extra__ == want.__pydantic_extra__
    assert got.__pydantic_private__ == want.__pydantic_private__
    for name, value in want.__dict__.items():
        assert type(got.__dict__[name]) is type(value), name
    assert got.model_dump_json(exclude_none=True) == want.model_dump_json(exclude_none=True)
    assert got.model_dump() == want.model_dump()
    assert repr(got) == repr(want)


class _Clock(dt.datetime):
    """A datetime subclass, as test clocks produce."""


@settings(max_examples=300)
@given(
    rule=st.sampled_from(R.PER_MESSAGE_RULES),
    event_id=st.text(min_size=1, max_size=20),
    category=st.sampled_from(list(Category)),
    signature=st.one_of(st.none(), TEXT),
    enterprise=st.one_of(st.none(), TEXT),
    detail=TEXT,
    sector=st.sampled_from([None, "retail", "finance", "other"]),
    detected_at=st.one_of(
        st.datetimes(timezones=st.sampled_from([dt.UTC, ZoneInfo("Asia/Shanghai")])),
        st.datetimes(),
        st.datetimes(timezones=st.just(dt.UTC)).map(
            lambda d: _Clock(d.year, d.month, d.day, d.hour, tzinfo=dt.UTC)
        ),
    ),
)
def test_message_alert_is_the_validated_alert(
    rule: R.Rule,
    event_id: str,
    category: Category,
    signature: str | None,
    enterprise: str | None,
    detail: str,
    sector: str | None,
    detected_at: dt.datetime,
) -> None:
    event = EVENT.model_copy(update={"event_id": event_id, "category": category})
    alert_id = R.alert_id(rule.id, event_id)
    got = message_alert(
        alert_id,
        rule,
        event,
        detected_at,
        signature,
        enterprise,
        "k1:ab",
        "138****8000",
        detail,
        sector,
    )
    want = Alert(
        alert_id=alert_id,
        rule=rule.id,
        severity=rule.severity,
        ts=event.ts,
        detected_at=detected_at,
        event_id=event.event_id,
        gateway=event.gateway,
        account=event.account,
        port=event.port,
        signature=signature,
        enterprise=enterprise,
        category=event.category,
        sector=sector,
        msisdn_hash="k1:ab",
        msisdn_masked="138****8000",
        detail=detail,
    )
    assert_same_alert(got, want)


def test_message_alert_validates_values_of_another_type() -> None:
    """An event built without validation (a str ts) gets the validated Alert, as before."""
    loose = MtEvent.model_construct(**{**EVENT.__dict__, "ts": "2026-10-20T10:00:00+08:00"})
    rule = replace(R.CONSENT_MISSING)
    got = message_alert("id", rule, loose, EVENT.ts, None, None, "h", "m", "d")
    assert got.ts == dt.datetime(2026, 10, 20, 2, 0, tzinfo=dt.UTC)
    with pytest.raises(ValueError):
        message_alert("id", rule, EVENT, "not a time", None, None, "h", "m", "d")  # type: ignore[arg-type]
    strict = json.loads(
        message_alert("id", rule, EVENT, EVENT.ts, None, None, "h", "m", "d").model_dump_json()
    )
    assert strict["severity"] == Severity.MAJOR.value


# -- content checker -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"content_rules_enabled": False},
        {"quiet_hours_enabled": False},
        {"allowed_hours_tz": "Europe/Berlin", "timezone": "UTC"},
        {"timezone": "Asia/Urumqi", "allowed_hours_start": "22:00", "allowed_hours_end": "06:30"},
    ],
)
def test_audit_content_checker_is_the_workers(env: dict[str, Any]) -> None:
    """One builder for the worker and the audit, and it follows the settings."""
    from smsmon.agents.pipeline import content_checker as workers
    from smsmon.config.settings import Settings
    from smsmon.rules.content.checks import content_checker

    assert workers is content_checker
    s = Settings(msisdn_secret="x", **env)
    got = content_checker(s)
    if not s.content_rules_enabled:
        assert got is None
        return
    assert isinstance(got, ContentChecker)
    assert got.hours.start == s.allowed_hours_start and got.hours.end == s.allowed_hours_end
    assert got.hours.tz == (s.allowed_hours_tz or s.timezone)
    assert got.hours.enabled == s.quiet_hours_enabled


@pytest.mark.parametrize("cache_size", [0, 2, 50_000])
def test_cached_verdicts_equal_the_classifier(cache_size: int) -> None:
    classifier = MarketingClassifier.load()
    checker = ContentChecker(classifier, AllowedHours(), cache_size=cache_size)
    texts = [
        "【淘宝】您的验证码123456,5分钟内有效",
        "【淘宝】您的验证码654321,5分钟内有效",
        "【京东】双11预售开启,满300减50,回T退订",
        "您的订单已发货,请注意查收",
        "限时抢购 点击 t.cn/abc 领券",
    ]
    for _ in range(3):
        for text in texts:
            assert checker.verdict(text) == classifier.classify(text)
            assert len(checker._by_text) <= cache_size


# -- per-message rules: remembered registry joins --------------------------------------------------


def check_mt_before(event: MtEvent, book: Any, consent: Any) -> Any:
    """compliance.check_mt as it was, without remembered joins."""
    from smsmon.contract.models import PortStatus, SignatureStatus
    from smsmon.rules.compliance import Finding, MtVerdict, derive_enterprise

    p = book.port_for(event.port)
    sig = extract_signature(event.signature, event.text)
    s = book.signature_for(sig)
    ent = derive_enterprise(p, s)
    v = MtVerdict(port=p, signature=sig, sig_record=s, enterprise=ent)
    out = v.findings
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
    if event.category is Category.MARKETING and ent is not None:
        state = consent(event.msisdn, ent)
        if state is None:
            out.append(Finding(R.CONSENT_MISSING, f"no consent recorded for {ent}"))
        elif state.revoked and state.ts_us <= (
            event.ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        ) // dt.timedelta(microseconds=1):
            out.append(
                Finding(
                    R.CONSENT_REVOKED,
                    f"consent to {ent} revoked as of "
                    f"{dt.datetime.fromtimestamp(state.ts_us / 1e6, dt.UTC).isoformat()}",
                )
            )
    return v


PORT_RECORDS = st.fixed_dictionaries(
    {
        "port": st.sampled_from(["1069", "10690001", "10660000", "106900011"]),
        "enterprise": st.sampled_from(["ENT_A", "ENT_B"]),
        "accounts": st.lists(st.sampled_from(["acc_a", "acc_b"]), max_size=2),
        "categories": st.lists(st.sampled_from(["marketing", "notification"]), max_size=2),
        "status": st.sampled_from(["active", "suspended"]),
        "shared": st.booleans(),
    }
)
SIGNATURE_RECORDS = st.fixed_dictionaries(
    {
        "signature": st.sampled_from(["Taobao", "京东", "ＴＡＯＢＡＯ"]),
        "enterprise": st.sampled_from(["ENT_A", "ENT_B"]),
        "ports": st.lists(st.sampled_from(["1069", "10690001", "10660000"]), max_size=2),
        "status": st.sampled_from(["active", "revoked"]),
    }
)
MT_EVENTS = st.fixed_dictionaries(
    {
        "port": st.sampled_from(["106900011234", "10690001", "1066000077", "95555"]),
        "account": st.sampled_from(["acc_a", "acc_b", "x"]),
        "category": st.sampled_from(["marketing", "notification", "verification"]),
        "text": st.sampled_from(["【Taobao】sale", "sale【京东】", "no signature", "【】x"]),
        "signature": st.sampled_from([None, "【Taobao】", "京东", "Other"]),
        "msisdn": st.sampled_from(["13800138000", "13900139000"]),
    }
)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("port"), PORT_RECORDS, st.booleans()),
            st.tuples(st.just("signature"), SIGNATURE_RECORDS, st.booleans()),
            st.tuples(st.just("mt"), MT_EVENTS, st.booleans()),
        ),
        max_size=30,
    )
)
def test_check_mt_with_remembered_joins_is_unchanged(steps: list[Any]) -> None:
    from smsmon.contract.models import ConsentStatus, PortRecord, SignatureRecord
    from smsmon.rules.compliance import check_mt
    from smsmon.rules.consent import ConsentState
    from smsmon.rules.reference import ReferenceBook, signature_record_key

    book = ReferenceBook()
    states = {
        ("13800138000", "ENT_A"): ConsentState(ConsentStatus.REVOKED, 0),
        ("13900139000", "ENT_A"): ConsentState(ConsentStatus.GRANTED, 0),
    }

    def consent(msisdn: str, enterprise: str) -> Any:
        return states.get((msisdn, enterprise))

    for i, (what, data, flag) in enumerate(steps):
        if what == "port":
            p = PortRecord.model_validate(data)
            book.put_port(p.port, None if flag else p)
        elif what == "signature":
            s = SignatureRecord.model_validate(data)
            book.put_signature(signature_record_key(s), None if flag else s)
        else:
            ev = EVENT.model_validate(
                {**EVENT.model_dump(), **data, "event_id": f"e{i}", "kind": "mt"}
            )
            for _ in range(2 if flag else 1):  # the second time from the remembered join
                got, want = check_mt(ev, book, consent), check_mt_before(ev, book, consent)
                assert (got.port, got.signature, got.sig_record, got.enterprise) == (
                    want.port,
                    want.signature,
                    want.sig_record,
                    want.enterprise,
                )
                assert got.findings == want.findings


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(_JSON)
def test_compact_json_is_json_dumps_with_the_same_arguments(value: Any) -> None:
    """The shared encoder (no per-call JSONEncoder, no circular check) writes the same bytes
    as the json.dumps calls it replaced in table values and partials."""
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert compact_json(value) == expected
