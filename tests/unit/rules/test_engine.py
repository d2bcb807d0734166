"""The engine: alerts as the contract shapes them, unsubscribe attribution, batches, dedup."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmon.contract.codec import encode_alert
from smsmon.contract.models import Category, ConsentRecord, ConsentStatus, DlrEvent, Severity
from smsmon.rules import catalog as R
from smsmon.rules.consent import ConsentState, RecentSenders
from smsmon.rules.engine import BatchOverlay, DictState, Outcome, id_digest, seen_in

if TYPE_CHECKING:
    from tests.unit.conftest import Factory

pytestmark = pytest.mark.unit

MSISDN = "13800138000"
DETECTED = dt.datetime(2024, 5, 1, 2, 0, 1, tzinfo=dt.UTC)


def grant(state: DictState, enterprise: str, ts_us: int = 0, msisdn: str = MSISDN) -> None:
    state.set_consent(msisdn, enterprise, ConsentState(ConsentStatus.GRANTED, ts_us))


def rule_ids(out: Outcome) -> list[str]:
    return sorted(a.rule for a in out.alerts)


def consent_of(state: DictState, enterprise: str) -> ConsentState | None:
    return state.consent(MSISDN, enterprise)


# --- alerts -----------------------------------------------------------------------------


def test_alert_carries_the_contract_fields(f: Factory) -> None:
    """An alert names rule, severity, event time, detection time and the joins it used."""
    eng, state = f.engine(), DictState()
    ev = f.mt("evt-42", account="acc_a", port="106900011234", at=5)
    (alert,) = eng.on_event(ev, state, DETECTED).alerts
    assert alert.rule == "consent.missing"
    assert alert.severity is Severity.MAJOR
    assert alert.ts == ev.ts
    assert alert.detected_at == DETECTED
    assert alert.event_id == "evt-42"
    assert alert.gateway == "gw1"
    assert alert.account == "acc_a"
    assert alert.port == "106900011234"
    assert alert.signature == "taobao"
    assert alert.enterprise == "ENT_A"
    assert alert.category is Category.MARKETING
    assert alert.msisdn_masked == "138****8000"
    assert alert.detail


def test_alert_severity_follows_the_rules_table(f: Factory) -> None:
    """Each alert's severity is the table's severity for its rule."""
    book = f.book(
        ports=[f.port(enterprise="ENT_B", status="suspended", categories=("notification",))],
        sigs=[f.sig(enterprise="ENT_A", ports=("95555",))],
    )
    out = f.engine(book).on_event(f.mt(account="x"), DictState(), DETECTED)
    assert {a.rule: a.severity for a in out.alerts} == {
        "port.suspended": Severity.CRITICAL,
        "port.account": Severity.CRITICAL,
        "port.category": Severity.MAJOR,
        "signature.scope": Severity.MAJOR,
        "consent.missing": Severity.MAJOR,
    }


def test_alert_id_is_uuid5_of_rule_and_event_id(f: Factory) -> None:
    """alert_id = uuid5(catalog namespace, "rule|event_id")."""
    out = f.engine().on_event(f.mt("evt-7", port="95555", text="x"), DictState(), DETECTED)
    assert rule_ids(out) == ["port.unregistered", "signature.missing"]
    for a in out.alerts:
        expected = uuid.uuid5(R.ALERT_NAMESPACE, f"{a.rule}|evt-7")
        assert a.alert_id == str(expected)
        assert uuid.UUID(a.alert_id).version == 5


def test_repeated_event_yields_the_same_alert_ids(f: Factory) -> None:
    """The same event processed twice (a replay) yields identical alert ids."""
    eng = f.engine()
    ev = f.mt("evt-dup", port="95555", text="x")
    first = [a.alert_id for a in eng.on_event(ev, DictState(), DETECTED).alerts]
    later = DETECTED + dt.timedelta(hours=1)
    second = [a.alert_id for a in eng.on_event(ev, DictState(), later).alerts]
    assert first == second
    assert len(set(first)) == len(first) == 2


def test_different_events_get_different_alert_ids(f: Factory) -> None:
    """Alert ids differ across event ids for the same rule."""
    eng = f.engine()
    a = eng.on_event(f.mt("evt-1", port="95555"), DictState(), DETECTED).alerts
    b = eng.on_event(f.mt("evt-2", port="95555"), DictState(), DETECTED).alerts
    assert {x.alert_id for x in a}.isdisjoint({x.alert_id for x in b})


def test_alert_msisdn_hash_is_key_id_and_hmac_hex(f: Factory) -> None:
    """msisdn_hash is `<key id>:<64 hex>` of the configured secret's HMAC-SHA256."""
    (alert,) = f.engine(secret=b"s1", key_id="k9").on_event(f.mt(), DictState(), DETECTED).alerts
    assert alert.msisdn_hash is not None
    assert re.fullmatch(r"k9:[0-9a-f]{64}", alert.msisdn_hash)
    expected = hmac.new(b"s1", MSISDN.encode(), hashlib.sha256).hexdigest()
    assert alert.msisdn_hash == f"k9:{expected}"


def test_alert_msisdn_hash_changes_with_the_secret(f: Factory) -> None:
    """Rotating the secret changes the hash of the same msisdn."""
    a = f.engine(secret=b"s1", key_id="k1").on_event(f.mt(), DictState(), DETECTED).alerts[0]
    b = f.engine(secret=b"s2", key_id="k2").on_event(f.mt(), DictState(), DETECTED).alerts[0]
    assert a.msisdn_hash != b.msisdn_hash
    assert a.msisdn_hash is not None
    assert b.msisdn_hash is not None
    assert a.msisdn_hash.split(":")[1] != b.msisdn_hash.split(":")[1]


def test_compliant_message_yields_no_alert(f: Factory) -> None:
    """A compliant marketing message with granted consent produces no alert."""
    state = DictState()
    grant(state, "ENT_A")
    out = f.engine().on_event(f.mt(), state, DETECTED)
    assert out.alerts == []
    assert out.verdict is not None
    assert out.verdict.findings == []


def test_dlr_produces_nothing(f: Factory) -> None:
    """Delivery reports are counted but checked against no rule."""
    dlr = DlrEvent.model_validate(
        {
            "event_id": "d1",
            "ts": f.at(0),
            "kind": "dlr",
            "gateway": "gw1",
            "port": "95555",
            "msisdn": MSISDN,
            "status": "DELIVRD",
        }
    )
    out = f.engine().on_event(dlr, DictState(), DETECTED)
    assert out == Outcome()


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


MARKER = "BODY-MARKER-7f3a"
bodies = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=80)


@given(
    national=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
    prefix=st.sampled_from(["", "+86", "0086", "86", "+86 "]),
    body=bodies,
    leading_sig=st.booleans(),
    port=st.sampled_from(["95555", "106900011234", "10690001"]),
)
def test_alert_json_never_contains_raw_msisdn_or_text(
    f: Factory, national: str, prefix: str, body: str, leading_sig: bool, port: str
) -> None:
    """Published alert JSON holds neither the msisdn (any form) nor the message text."""
    text = f"【Taobao】{body}{MARKER}" if leading_sig else f"{body}{MARKER}"
    book = f.book(ports=[f.port(enterprise="ENT_B")])
    ev = f.mt("evt-p", port=port, msisdn=prefix + national, account="other", text=text)
    assert ev.msisdn == national
    out = f.engine(book).on_event(ev, DictState(), DETECTED)
    assert out.alerts
    for alert in out.alerts:
        raw = encode_alert(alert)
        strings = list(_strings(json.loads(raw)))
        for s in strings:
            assert national not in s
            assert text not in s
            assert MARKER not in s
        assert national.encode() not in raw
        assert MARKER.encode() not in raw
        assert alert.msisdn_masked == f"{national[:3]}****{national[-4:]}"


# --- unsubscribe ------------------------------------------------------------------------


def test_unsubscribe_attributed_to_latest_mt_enterprise_and_flags_later_marketing(
    f: Factory,
) -> None:
    """TD after an mt revokes consent for that mt's E; a later marketing mt is consent.revoked."""
    eng, state = f.engine(), DictState()
    grant(state, "ENT_A")
    assert eng.on_event(f.mt("mt-1", at=0), state, DETECTED).alerts == []
    out = eng.on_event(f.mo("mo-1", text="TD", at=60), state, DETECTED)
    assert out.unsubscribe is True
    assert out.revocations == [
        ConsentRecord(
            msisdn=MSISDN,
            enterprise="ENT_A",
            status=ConsentStatus.REVOKED,
            ts=f.at(60),
            source="mo",
        )
    ]
    after = eng.on_event(f.mt("mt-2", at=120), state, DETECTED)
    assert rule_ids(after) == ["consent.revoked"]


def test_unsubscribe_from_another_extension_maps_to_the_registered_code(f: Factory) -> None:
    """mt from 106900011234 and a reply to 106900015678 share registered port 10690001."""
    book = f.book(
        ports=[f.port(enterprise="PLATFORM", shared=True)],
        sigs=[f.sig(enterprise="ENT_A")],
    )
    eng, state = f.engine(book), DictState()
    eng.on_event(f.mt("mt-1", port="106900011234", at=0), state, DETECTED)
    out = eng.on_event(f.mo("mo-1", port="106900015678", at=60), state, DETECTED)
    assert out.unsubscribe is True
    assert [r.enterprise for r in out.revocations] == ["ENT_A"]


def test_unsubscribe_prefers_latest_mt_enterprise_over_the_ports(f: Factory) -> None:
    """X is the latest mt's E (from the signature), even if the non-shared port is another's."""
    book = f.book(ports=[f.port(enterprise="ENT_B")], sigs=[f.sig(enterprise="ENT_A")])
    eng, state = f.engine(book), DictState()
    eng.on_event(f.mt("mt-1", at=0), state, DETECTED)
    out = eng.on_event(f.mo("mo-1", at=60), state, DETECTED)
    assert [r.enterprise for r in out.revocations] == ["ENT_A"]
    assert consent_of(state, "ENT_B") is None


def test_unsubscribe_uses_the_latest_of_several_mts_from_the_port(f: Factory) -> None:
    """Several enterprises wrote through one port: the latest one's consent is revoked."""
    book = f.book(
        ports=[f.port(enterprise="PLATFORM", shared=True)],
        sigs=[f.sig("Taobao", "ENT_A"), f.sig("JD", "ENT_C")],
    )
    eng, state = f.engine(book), DictState()
    eng.on_event(f.mt("mt-1", text="【Taobao】a", at=0), state, DETECTED)
    eng.on_event(f.mt("mt-2", text="【JD】b", at=10), state, DETECTED)
    out = eng.on_event(f.mo("mo-1", at=60), state, DETECTED)
    assert [r.enterprise for r in out.revocations] == ["ENT_C"]


def test_unsubscribe_ignores_later_mt_with_unknown_enterprise(f: Factory) -> None:
    """Only mts with a known E count: an unsigned mt on a shared port does not mask the last E."""
    book = f.book(ports=[f.port(enterprise="PLATFORM", shared=True)], sigs=[f.sig()])
    eng, state = f.engine(book), DictState()
    eng.on_event(f.mt("mt-1", at=0), state, DETECTED)
    eng.on_event(f.mt("mt-2", text="no signature", at=10), state, DETECTED)
    out = eng.on_event(f.mo("mo-1", at=60), state, DETECTED)
    assert [r.enterprise for r in out.revocations] == ["ENT_A"]


def test_unsubscribe_ignores_mts_from_other_ports(f: Factory) -> None:
    """An mt from another port does not attribute a reply on this port."""
    book = f.book(
        ports=[f.port("10690001", "ENT_A"), f.port("10690002", "ENT_B")],
        sigs=[f.sig(enterprise="ENT_A")],
    )
    eng, state = f.engine(book), DictState()
    eng.on_event(f.mt("mt-1", port="106900011234", at=0), state, DETECTED)
    out = eng.on_event(f.mo("mo-1", port="10690002", at=60), state, DETECTED)
    assert [r.enterprise for r in out.revocations] == ["ENT_B"]
    assert consent_of(state, "ENT_A") is None


def test_unsubscribe_without_mt_falls_back_to_non_shared_port(f: Factory) -> None:
    """No earlier mt: the reply revokes consent for the non-shared port's enterprise."""
    eng, state = f.engine(), DictState()
    out = eng.on_event(f.mo("mo-1", port="106900019999", at=0), state, DETECTED)
    assert out.unsubscribe is True
    assert [r.enterprise for r in out.revocations] == ["ENT_A"]
    current = consent_of(state, "ENT_A")
    assert current is not None
    assert current.revoked


def test_unsubscribe_on_shared_port_without_mt_is_unattributed(f: Factory) -> None:
    """No earlier mt and a shared port: the reply is unattributed and changes nothing."""
    book = f.book(ports=[f.port(enterprise="PLATFORM", shared=True)])
    eng, state = f.engine(book), DictState()
    out = eng.on_event(f.mo("mo-1", at=0), state, DETECTED)
    assert out.unsubscribe is False
    assert out.revocations == []
    assert state.consents == {}


def test_unsubscribe_on_unregistered_port_without_mt_is_unattributed(f: Factory) -> None:
    """No P and no earlier mt: unattributed."""
    eng, state = f.engine(), DictState()
    out = eng.on_event(f.mo("mo-1", port="95555", at=0), state, DETECTED)
    assert out.unsubscribe is False
    assert out.revocations == []


def test_unsubscribe_on_unregistered_port_after_signed_mt_is_attributed(f: Factory) -> None:
    """Without P, the mt's E (from its signature) on that same port attributes the reply."""
    eng, state = f.engine(), DictState()
    eng.on_event(f.mt("mt-1", port="95555", at=0), state, DETECTED)
    out = eng.on_event(f.mo("mo-1", port="95555", at=60), state, DETECTED)
    assert [r.enterprise for r in out.revocations] == ["ENT_A"]


def test_non_keyword_reply_is_not_an_unsubscribe(f: Factory) -> None:
    """A reply that is not a keyword leaves consent alone and is not counted as unsubscribe."""
    eng, state = f.engine(), DictState()
    grant(state, "ENT_A")
    out = eng.on_event(f.mo("mo-1", text="好的", at=60), state, DETECTED)
    assert out.unsubscribe is None
    assert out.revocations == []
    current = consent_of(state, "ENT_A")
    assert current is not None
    assert not current.revoked


@pytest.mark.parametrize("text", ["t", "TD", "Ｔ", " stop ", "退订。", "我要退订", "取消", "拒收"])
def test_unsubscribe_keywords_revoke_through_the_engine(f: Factory, text: str) -> None:
    """Every keyword form revokes consent when the reply is attributed."""
    out = f.engine().on_event(f.mo("mo-1", text=text), DictState(), DETECTED)
    assert out.unsubscribe is True
    assert len(out.revocations) == 1


def test_revocation_is_per_enterprise(f: Factory) -> None:
    """After TD to ENT_A, marketing from ENT_C (granted) is still fine."""
    book = f.book(
        ports=[f.port("10690001", "ENT_A"), f.port("10690003", "ENT_C")],
        sigs=[f.sig("Taobao", "ENT_A"), f.sig("JD", "ENT_C")],
    )
    eng, state = f.engine(book), DictState()
    grant(state, "ENT_A")
    grant(state, "ENT_C")
    eng.on_event(f.mo("mo-1", port="10690001", at=0), state, DETECTED)
    other = eng.on_event(f.mt("mt-1", port="10690003", text="【JD】x", at=10), state, DETECTED)
    assert other.alerts == []
    same = eng.on_event(f.mt("mt-2", port="10690001", at=20), state, DETECTED)
    assert rule_ids(same) == ["consent.revoked"]


def test_revocation_does_not_flag_non_marketing(f: Factory) -> None:
    """After TD, a verification message from the same enterprise is not flagged."""
    eng, state = f.engine(), DictState()
    eng.on_event(f.mo("mo-1", at=0), state, DETECTED)
    out = eng.on_event(f.mt("mt-1", category="verification", at=10), state, DETECTED)
    assert out.alerts == []


def test_unsubscribe_older_than_standing_grant_is_stale(f: Factory) -> None:
    """A reply older than the standing grant is ignored: no revocation record, consent stays."""
    eng, state = f.engine(), DictState()
    grant(state, "ENT_A", ts_us=int(f.at(100).timestamp() * 1_000_000))
    out = eng.on_event(f.mo("mo-1", at=50), state, DETECTED)
    assert out.revocations == []
    current = consent_of(state, "ENT_A")
    assert current is not None
    assert not current.revoked


def test_unsubscribe_at_the_same_ts_as_a_grant_wins(f: Factory) -> None:
    """A reply with the same ts as the standing grant revokes (revoked wins on ties)."""
    eng, state = f.engine(), DictState()
    grant(state, "ENT_A", ts_us=int(f.at(100).timestamp() * 1_000_000))
    out = eng.on_event(f.mo("mo-1", at=100), state, DETECTED)
    assert [r.enterprise for r in out.revocations] == ["ENT_A"]


def test_recent_sender_capacity_bounds_attribution(f: Factory) -> None:
    """Only `capacity` ports per msisdn are remembered: the oldest falls out of attribution."""
    book = f.book(
        ports=[f.port(f"1069000{i}", "PLATFORM", shared=True) for i in (1, 2, 3)],
        sigs=[f.sig(f"S{i}", f"ENT_{i}") for i in (1, 2, 3)],
    )
    eng, state = f.engine(book, capacity=2), DictState()
    for i in (1, 2, 3):
        eng.on_event(f.mt(f"mt-{i}", port=f"1069000{i}", text=f"【S{i}】x", at=i), state, DETECTED)
    assert len(state.recent(MSISDN).entries) == 2
    evicted = eng.on_event(f.mo("mo-1", port="10690001", at=10), state, DETECTED)
    assert evicted.unsubscribe is False
    assert evicted.unattributed == "evicted"
    kept = eng.on_event(f.mo("mo-3", port="10690003", at=10), state, DETECTED)
    assert [r.enterprise for r in kept.revocations] == ["ENT_3"]


def test_recent_sender_horizon_bounds_attribution(f: Factory) -> None:
    """An mt older than the horizon no longer attributes a reply."""
    book = f.book(ports=[f.port(enterprise="PLATFORM", shared=True)], sigs=[f.sig()])
    eng, state = f.engine(book, horizon_ms=3_600_000), DictState()
    eng.on_event(f.mt("mt-1", at=0), state, DETECTED)
    late = eng.on_event(f.mo("mo-late", at=3_601), state, DETECTED)
    assert late.unsubscribe is False
    inside = eng.on_event(f.mo("mo-in", at=3_599), state, DETECTED)
    assert [r.enterprise for r in inside.revocations] == ["ENT_A"]


def test_sequence_in_ts_order_flags_exactly_the_marketing_after_the_reply(f: Factory) -> None:
    """Marketing before TD passes; every marketing mt after it is consent.revoked."""
    eng, state = f.engine(), DictState()
    grant(state, "ENT_A")
    seq = [
        f.mt("m1", at=1),
        f.mt("m2", at=2),
        f.mo("r1", text="退订", at=3),
        f.mt("m3", at=4),
        f.mt("n1", category="notification", at=5),
        f.mt("m4", at=6),
    ]
    flagged = {
        (ev.event_id, a.rule) for ev in seq for a in eng.on_event(ev, state, DETECTED).alerts
    }
    assert flagged == {("m3", "consent.revoked"), ("m4", "consent.revoked")}


# --- batches ----------------------------------------------------------------------------


class OverlayState:
    """A `State` over backing dicts through BatchOverlay, as the live agent batches it."""

    def __init__(self) -> None:
        self.consent_store: dict[tuple[str, str], ConsentState] = {}
        self.recent_store: dict[str, RecentSenders] = {}
        self.consents: BatchOverlay[tuple[str, str], ConsentState, str] = BatchOverlay(
            self.consent_store.get
        )
        self.recents: BatchOverlay[str, RecentSenders, str] = BatchOverlay(self.recent_store.get)
        self.writer = ""

    def consent(self, msisdn: str, enterprise: str) -> ConsentState | None:
        return self.consents.get((msisdn, enterprise))

    def set_consent(self, msisdn: str, enterprise: str, state: ConsentState | None) -> None:
        self.consents.set((msisdn, enterprise), state, self.writer)

    def recent(self, msisdn: str) -> RecentSenders:
        r = self.recents.get(msisdn)
        return RecentSenders(list(r.entries)) if r is not None else RecentSenders()

    def set_recent(self, msisdn: str, senders: RecentSenders) -> None:
        self.recents.set(msisdn, senders, self.writer)

    def commit(self) -> list[tuple[Any, Any, str]]:
        writes: list[tuple[Any, Any, str]] = []
        for ck, cv, cw, _ in self.consents.drain():
            writes.append((ck, cv, cw))
            if cv is None:
                self.consent_store.pop(ck, None)
            else:
                self.consent_store[ck] = cv
        for rk, rv, rw, _ in self.recents.drain():
            writes.append((rk, rv, rw))
            if rv is not None:
                self.recent_store[rk] = rv
        return writes


def test_unsubscribe_applies_to_later_events_of_the_same_batch(f: Factory) -> None:
    """Inside one batch (before any write-back) a TD flags the next marketing mt."""
    eng, state = f.engine(), OverlayState()
    state.consent_store[(MSISDN, "ENT_A")] = ConsentState(ConsentStatus.GRANTED, 0)
    batch = [f.mt("m1", at=1), f.mo("r1", at=2), f.mt("m2", at=3)]
    alerts: dict[str, list[str]] = {}
    for ev in batch:
        state.writer = ev.event_id
        alerts[ev.event_id] = rule_ids(eng.on_event(ev, state, DETECTED))
    assert alerts == {"m1": [], "r1": [], "m2": ["consent.revoked"]}
    assert not state.consent_store[(MSISDN, "ENT_A")].revoked  # not yet written back
    writes = state.commit()
    consent_writes = [w for w in writes if w[0] == (MSISDN, "ENT_A")]
    assert len(consent_writes) == 1
    assert consent_writes[0][2] == "r1"
    assert state.consent_store[(MSISDN, "ENT_A")].revoked


def test_batch_gives_the_same_alerts_as_one_by_one(f: Factory) -> None:
    """Processing a sequence as one batch yields the same alerts as with immediate writes."""
    seq = [
        f.mo("r0", text="好的", at=0),
        f.mt("m1", at=1),
        f.mo("r1", at=2),
        f.mt("m2", at=3),
        f.mt("m3", port="95555", text="x", at=4),
    ]
    eng = f.engine()
    direct, batched = DictState(), OverlayState()
    a = [(e.event_id, rule_ids(eng.on_event(e, direct, DETECTED))) for e in seq]
    b = [(e.event_id, rule_ids(eng.on_event(e, batched, DETECTED))) for e in seq]
    assert a == b


def test_overlay_reads_its_own_writes_and_loads_each_key_at_most_once() -> None:
    """After set, get returns the new value; the store is read once per key, never written."""
    loads: list[str] = []
    store = {"a": 1}

    def load(key: str) -> int | None:
        loads.append(key)
        return store.get(key)

    ov: BatchOverlay[str, int, str] = BatchOverlay(load)
    assert ov.get("a") == 1
    assert ov.get("a") == 1
    ov.set("a", 2, "w1")
    ov.set("b", 3, "w2")
    assert ov.get("a") == 2
    assert ov.get("b") == 3
    ov.set("b", 4, "w3")
    assert ov.get("b") == 4
    assert sorted(loads) == sorted(set(loads))
    assert set(loads) <= {"a", "b"}
    assert store == {"a": 1}


def test_overlay_drains_one_write_per_key_with_the_last_writer() -> None:
    """drain yields each dirty key once, with its final value and the last writer's token."""
    ov: BatchOverlay[str, int, str] = BatchOverlay({"a": 0}.get)
    ov.set("a", 1, "w1")
    ov.set("b", 5, "w2")
    ov.set("a", 2, "w3")
    ov.set("a", None, "w4")
    ov.set("c", 7, "w5")
    ov.get("untouched")
    assert len(ov) == 3
    drained = sorted((item[0], item[1], item[2]) for item in ov.drain())
    assert drained == [("a", None, "w4"), ("b", 5, "w2"), ("c", 7, "w5")]
    assert len(ov) == 0
    assert list(ov.drain()) == []


def test_overlay_drain_reports_the_value_before_the_batch() -> None:
    """Each drained write also carries the key's value before the batch (for exact counts)."""
    ov: BatchOverlay[str, int, str] = BatchOverlay({"a": 10}.get)
    ov.set("a", 11, "w1")
    ov.set("a", 12, "w2")
    ov.set("new", 1, "w3")
    assert sorted(ov.drain()) == [("a", 12, "w2", 10), ("new", 1, "w3", None)]


def test_overlay_reloads_after_drain() -> None:
    """After a drain the overlay forgets its cache, so the next batch reads the store."""
    store: dict[str, int] = {}
    ov: BatchOverlay[str, int, str] = BatchOverlay(store.get)
    ov.set("a", 1, "w")
    for key, value, *_ in ov.drain():
        assert value is not None
        store[key] = value
    store["a"] = 9
    assert ov.get("a") == 9


class Window:
    """One subscriber's recent-id window, driven through `seen_in`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw = b""

    def seen(self, event_id: str) -> bool:
        repeated, self.raw = seen_in(self.raw, event_id, self.capacity)
        return repeated


def test_recent_ids_report_repeats_within_capacity() -> None:
    """A repeated event_id is seen; a new one is not."""
    d = Window(3)
    assert not d.seen("e1")
    assert d.seen("e1")
    assert not d.seen("e2")
    assert d.seen("e1")
    assert d.seen("e2")


def test_recent_ids_forget_the_oldest_beyond_capacity() -> None:
    """Bounded: beyond capacity the oldest id is forgotten (a repeat does not refresh it:
    the window is the subscriber's last ids in arrival order)."""
    d = Window(2)
    d.seen("e1")
    d.seen("e2")
    d.seen("e3")  # pushes e1 out
    assert not d.seen("e1")  # forgotten, so new again (and now kept, pushing e2 out)
    assert d.seen("e3")
    assert not d.seen("e2")
    assert len(d.raw) == 2 * 8


def test_recent_ids_capacity_zero_disables_dedup() -> None:
    """Capacity 0 remembers nothing: every event is processed."""
    d = Window(0)
    assert not d.seen("e1")
    assert not d.seen("e1")
    assert d.raw == b""


@given(st.lists(st.sampled_from([f"e{i}" for i in range(8)]), max_size=40), st.integers(1, 5))
def test_recent_ids_are_exactly_the_last_capacity_new_ids(ids: list[str], capacity: int) -> None:
    """seen() is True exactly for an id among the last `capacity` ids that were new (a model
    of the window); never for an unseen id."""
    d = Window(capacity)
    model: list[str] = []
    for i in ids:
        expected = i in model
        assert d.seen(i) is expected
        if not expected:
            model = [*model, i][-capacity:]


def test_recent_id_window_survives_its_encoding() -> None:
    """The window is plain bytes in the subscriber's value: reading it back is the same.
    It may contain newline bytes: the subscriber value splits at its first two only."""
    d = Window(4)
    for i in ("a", "b", "c"):
        d.seen(i)
    again = Window(4)
    again.raw = bytes(d.raw)
    assert again.seen("b") and not again.seen("z")
    assert id_digest("a") == id_digest("a") and len(id_digest("a")) == 8


def test_a_digest_straddling_two_entries_is_not_a_repeat(monkeypatch: Any) -> None:
    """Only a match at an entry boundary counts: the bytes of two neighbouring entries may
    contain a third id's digest."""
    from smsmon.rules import engine

    digests = {"a": b"AAAAAAAA", "b": b"BBBBBBBB", "x": b"AAAABBBB"}
    monkeypatch.setattr(engine, "id_digest", digests.__getitem__)
    d = Window(4)
    assert not d.seen("a") and not d.seen("b")
    assert not d.seen("x")  # inside a+b, off the boundary: new
    assert d.seen("x") and d.seen("a")


def test_an_unsubscribe_to_the_oldest_of_twenty_senders_is_honoured(f: Factory) -> None:
    """退订仍遭骚扰: twenty senders wrote from twenty shared ports; the subscriber replies TD
    to the first one; that sender's next marketing is `consent.revoked`, although the
    subscriber had granted it consent earlier."""
    ports = [f"106900{i:02d}" for i in range(20)]
    book = f.book(
        ports=[f.port(p, "PLATFORM", shared=True) for p in ports],
        sigs=[f.sig(f"S{i}", f"ENT_{i}") for i in range(20)],
    )
    eng, state = f.engine(book), DictState()
    grant(state, "ENT_0", ts_us=0)
    for i, port in enumerate(ports):
        eng.on_event(f.mt(f"mt-{i}", port=port, text=f"【S{i}】x", at=i), state, DETECTED)
    out = eng.on_event(f.mo("mo-td", port=ports[0], at=100), state, DETECTED)
    assert out.unsubscribe is True
    assert [r.enterprise for r in out.revocations] == ["ENT_0"]
    again = eng.on_event(
        f.mt("mt-again", port=ports[0], text="【S0】大促 回T退订", category="marketing", at=200),
        state,
        DETECTED,
    )
    assert "consent.revoked" in {a.rule for a in again.alerts}


def test_an_unsubscribe_to_a_port_nobody_used_is_unknown_sender(f: Factory) -> None:
    book = f.book(ports=[f.port("10690099", "PLATFORM", shared=True)], sigs=[f.sig()])
    eng, state = f.engine(book), DictState()
    out = eng.on_event(f.mo("mo-1", port="10690099", at=10), state, DETECTED)
    assert out.unsubscribe is False and out.unattributed == "unknown_sender"


def consent_record(f: Factory, enterprise: str, at: float, **extra: Any) -> ConsentRecord:
    return ConsentRecord(
        msisdn=MSISDN, enterprise=enterprise, status=ConsentStatus.GRANTED, ts=f.at(at), **extra
    )


@pytest.mark.parametrize("method", ["registration_default", "implied"])
def test_marketing_on_a_default_or_implied_consent_is_consent_implicit(
    f: Factory, method: str
) -> None:
    """默认 consent: a grant recorded as given by registration (or implied) does not make
    marketing lawful; the alert cites the record's ts, source, method and proof reference."""
    eng, state = f.engine(), DictState()
    record = consent_record(f, "ENT_A", 5, source="signup", method=method, proof_ref="reg/77")
    assert eng.on_consent(MSISDN, "ENT_A", record, state) == "applied"
    out = eng.on_event(f.mt(at=10), state, DETECTED)
    assert rule_ids(out).count("consent.implicit") == 1
    assert "consent.missing" not in rule_ids(out)
    (alert,) = [a for a in out.alerts if a.rule == "consent.implicit"]
    assert alert.severity is Severity.MAJOR
    for evidence in (method, "signup", "reg/77", f.at(5).isoformat()):
        assert evidence in alert.detail
    # notifications are not marketing: the rule does not apply
    note = f.mt("mt-2", category="notification", text="【Taobao】您的订单已发货", at=11)
    assert "consent.implicit" not in rule_ids(eng.on_event(note, state, DETECTED))


@pytest.mark.parametrize("extra", [{}, {"method": "web_form"}, {"method": "sms_reply"}])
def test_an_explicit_or_unstated_method_is_consent(f: Factory, extra: dict[str, Any]) -> None:
    """Records without `method` keep the meaning they had before the field existed."""
    eng, state = f.engine(), DictState()
    eng.on_consent(MSISDN, "ENT_A", consent_record(f, "ENT_A", 5, **extra), state)
    out = eng.on_event(f.mt(at=10), state, DETECTED)
    assert not {"consent.implicit", "consent.missing"} & set(rule_ids(out))


def test_a_later_explicit_grant_or_a_revocation_replaces_the_implicit_one(f: Factory) -> None:
    eng, state = f.engine(), DictState()
    eng.on_consent(MSISDN, "ENT_A", consent_record(f, "ENT_A", 5, method="implied"), state)
    same_ts = consent_record(f, "ENT_A", 5, method="app")  # restated with evidence
    assert eng.on_consent(MSISDN, "ENT_A", same_ts, state) == "applied"
    assert "consent.implicit" not in rule_ids(eng.on_event(f.mt(at=10), state, DETECTED))
    eng.on_consent(MSISDN, "ENT_A", consent_record(f, "ENT_A", 20, method="implied"), state)
    assert "consent.implicit" in rule_ids(eng.on_event(f.mt("mt-3", at=30), state, DETECTED))
    revoke = ConsentRecord(
        msisdn=MSISDN, enterprise="ENT_A", status=ConsentStatus.REVOKED, ts=f.at(40)
    )
    eng.on_consent(MSISDN, "ENT_A", revoke, state)
    ids = rule_ids(eng.on_event(f.mt("mt-4", at=50), state, DETECTED))
    assert "consent.revoked" in ids and "consent.implicit" not in ids


def test_marketing_alerts_carry_the_sector_recognised_in_the_text(f: Factory) -> None:
    """A loan offer declared as a notification is misdeclared marketing of the finance
    sector; every alert of that message carries the sector; a true notice carries none."""
    from smsmon.rules.content.checks import ContentChecker
    from smsmon.rules.content.classifier import MarketingClassifier
    from smsmon.rules.content.hours import AllowedHours
    from smsmon.rules.engine import Engine, EngineConfig

    eng = Engine(
        f.book(),
        EngineConfig(
            hasher=f.engine().config.hasher,
            content=ContentChecker(MarketingClassifier.load(), AllowedHours()),
        ),
    )
    state = DictState()
    loan = f.mt(
        "mt-loan",
        category="notification",
        text=(
            "【Taobao】尊敬的用户，您有一笔最高20万的备用金额度待领取，"
            "最快3分钟到账，日息低至0.02%，点击 t.cn/x 立即借款"
        ),
        at=10 * 3600,
    )
    out = eng.on_event(loan, state, DETECTED)
    assert "content.misdeclared" in rule_ids(out)
    assert {a.sector for a in out.alerts} == {"finance"}
    promo = f.mt("mt-promo", text="【Taobao】双11爆款直降，全场满300减50，回T退订", at=10 * 3600)
    assert {a.sector for a in eng.on_event(promo, state, DETECTED).alerts} == {"retail"}
    notice = f.mt(
        "mt-notice",
        port="99990001",  # unregistered: the notice still has an alert, without a sector
        category="notification",
        text="【Taobao】您的订单已发货",
        at=10 * 3600,
    )
    alerts = eng.on_event(notice, state, DETECTED).alerts
    assert [a.rule for a in alerts] == ["port.unregistered"]
    assert alerts[0].sector is None
