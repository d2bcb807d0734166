"""Consent: unsubscribe keywords, merging consent records, bounded recent-sender memory."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmon.contract.models import ConsentRecord, ConsentStatus
from smsmon.rules.consent import (
    ConsentState,
    Merge,
    RecentSender,
    RecentSenders,
    is_unsubscribe,
    merge_consent,
)
from smsmon.rules.engine import DictState

if TYPE_CHECKING:
    from tests.unit.conftest import Factory

pytestmark = pytest.mark.unit

G = ConsentStatus.GRANTED
X = ConsentStatus.REVOKED
KEYWORDS = ["t", "td", "r", "n", "stop", "unsubscribe", "退订", "取消", "拒收"]


# --- keywords ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", KEYWORDS)
def test_every_contract_keyword_unsubscribes(text: str) -> None:
    """Each keyword of the contract is an unsubscribe reply."""
    assert is_unsubscribe(text)


@pytest.mark.parametrize(
    "text",
    [
        "T",
        "TD",
        "Td",
        "Ｔ",  # full-width
        "ＴＤ",
        "  td  ",
        "td。",
        "TD!",
        "【退订】",
        "「退订」",
        "STOP",
        "Stop.",
        "UNSUBSCRIBE",
        "\t取消\n",
        "拒收！",
        "“R”",
        "n?",
        "　退订　",  # ideographic spaces
    ],
)
def test_keywords_match_after_normalisation(text: str) -> None:
    """Case, full-width forms, surrounding spaces and punctuation do not hide a keyword."""
    assert is_unsubscribe(text)


@pytest.mark.parametrize(
    "text",
    ["我要退订", "退订谢谢", "请帮我退订这个业务", "回复退订", "TD退订", "不要再发了，退订！"],
)
def test_text_containing_tuiding_unsubscribes(text: str) -> None:
    """Any reply whose normalised text contains 退订 unsubscribes."""
    assert is_unsubscribe(text)


@pytest.mark.parametrize(
    "text",
    [
        "好的",
        "tdx",
        "xtd",
        "stopping",
        "unsubscribed",
        "t d",  # inner space is kept, so this is not "td"
        "s t o p",
        "yes",
        "取消订单了吗",  # contains 取消 but only 退订 counts as a substring
        "拒收短信",
        "退 订",  # not the word 退订
        "",
        "   ",
        "。",
        "tt",
        "no",
    ],
)
def test_other_replies_do_not_unsubscribe(text: str) -> None:
    """Non-keywords (other than text containing 退订) are not unsubscribe replies."""
    assert not is_unsubscribe(text)


_WRAP = st.text(st.sampled_from(list(" \t\u3000.,!?。，！？、：;\"'“”「」【】()（）")), max_size=4)


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@given(
    st.sampled_from(KEYWORDS),
    st.lists(st.booleans(), min_size=11, max_size=11),
    st.booleans(),
    _WRAP,
    _WRAP,
)
def test_any_case_width_and_wrapping_of_a_keyword_unsubscribes(
    keyword: str, upper: list[bool], wide: bool, before: str, after: str
) -> None:
    """Property: a keyword in any case, width, and wrapped in spaces/punctuation unsubscribes."""
    cased = "".join(c.upper() if u else c for c, u in zip(keyword, upper, strict=False))
    text = before + (_full_width(cased) if wide else cased) + after
    assert is_unsubscribe(text)


# --- merge ------------------------------------------------------------------------------


def test_first_record_applies() -> None:
    """With no standing state any record applies."""
    assert merge_consent(None, ConsentState(G, 5)) == Merge.APPLIED
    assert merge_consent(None, ConsentState(X, 5)) == Merge.APPLIED


@pytest.mark.parametrize("current", [G, X])
@pytest.mark.parametrize("incoming", [G, X])
def test_greater_ts_stands(current: ConsentStatus, incoming: ConsentStatus) -> None:
    """A record with a greater ts replaces the standing one, whatever the statuses."""
    assert merge_consent(ConsentState(current, 5), ConsentState(incoming, 6)) == Merge.APPLIED


@pytest.mark.parametrize("current", [G, X])
@pytest.mark.parametrize("incoming", [G, X])
def test_older_record_arriving_later_is_stale(
    current: ConsentStatus, incoming: ConsentStatus
) -> None:
    """A record older than the standing one is stale and ignored."""
    assert merge_consent(ConsentState(current, 6), ConsentState(incoming, 5)) == Merge.STALE


def test_equal_ts_revoked_wins() -> None:
    """On equal ts, revoked wins: it replaces granted, and granted does not replace it."""
    assert merge_consent(ConsentState(G, 5), ConsentState(X, 5)) == Merge.APPLIED
    assert merge_consent(ConsentState(X, 5), ConsentState(G, 5)) == Merge.STALE


def test_equal_record_is_not_a_change() -> None:
    """The same status at the same ts changes nothing."""
    assert merge_consent(ConsentState(G, 5), ConsentState(G, 5)) == Merge.SAME
    assert merge_consent(ConsentState(X, 5), ConsentState(X, 5)) == Merge.SAME


states = st.builds(ConsentState, st.sampled_from([G, X]), st.integers(0, 20))


def _winner(records: list[ConsentState]) -> ConsentState:
    """The contract's standing record: greatest ts, revoked on ties."""
    return max(records, key=lambda s: (s.ts_us, s.revoked))


@given(st.lists(states, min_size=1, max_size=12))
def test_merge_result_is_independent_of_arrival_order(records: list[ConsentState]) -> None:
    """Applying records in any order leaves the greatest ts (revoked on ties) standing."""
    for order in (records, list(reversed(records)), sorted(records, key=lambda s: s.ts_us)):
        current: ConsentState | None = None
        for incoming in order:
            if merge_consent(current, incoming) == Merge.APPLIED:
                current = incoming
        assert current == _winner(records)


@given(states)
def test_consent_state_encoding_round_trips(state: ConsentState) -> None:
    """The stored form of a consent state decodes to the same state."""
    assert ConsentState.decode(state.encode()) == state


# --- engine.on_consent (reference topic) -------------------------------------------------


def _record(status: ConsentStatus, ts: dt.datetime, enterprise: str = "ENT_A") -> ConsentRecord:
    return ConsentRecord(msisdn="13800138000", enterprise=enterprise, status=status, ts=ts)


def test_on_consent_applies_newer_and_ignores_older(f: Factory) -> None:
    """Consent records merge by ts: newer applies, an older late record is stale."""
    eng, state = f.engine(), DictState()
    assert eng.on_consent("13800138000", "ENT_A", _record(G, f.at(10)), state) == Merge.APPLIED
    assert eng.on_consent("13800138000", "ENT_A", _record(X, f.at(5)), state) == Merge.STALE
    current = state.consent("13800138000", "ENT_A")
    assert current is not None
    assert not current.revoked
    assert eng.on_consent("13800138000", "ENT_A", _record(X, f.at(20)), state) == Merge.APPLIED
    current = state.consent("13800138000", "ENT_A")
    assert current is not None
    assert current.revoked


def test_on_consent_equal_ts_revoked_wins(f: Factory) -> None:
    """A granted and a revoked record with the same ts leave revoked, in either order."""
    for first, second in ((G, X), (X, G)):
        eng, state = f.engine(), DictState()
        eng.on_consent("13800138000", "ENT_A", _record(first, f.at(10)), state)
        eng.on_consent("13800138000", "ENT_A", _record(second, f.at(10)), state)
        current = state.consent("13800138000", "ENT_A")
        assert current is not None
        assert current.revoked


def test_on_consent_tombstone_deletes(f: Factory) -> None:
    """A null consent record (tombstone) deletes the state for (msisdn, enterprise)."""
    eng, state = f.engine(), DictState()
    eng.on_consent("13800138000", "ENT_A", _record(X, f.at(10)), state)
    eng.on_consent("13800138000", "ENT_A", None, state)
    assert state.consent("13800138000", "ENT_A") is None


def test_tombstone_makes_marketing_consent_missing_again(f: Factory) -> None:
    """After a tombstone a marketing message for that pair is consent.missing."""
    eng, state = f.engine(), DictState()
    eng.on_consent("13800138000", "ENT_A", _record(G, f.at(0)), state)
    assert eng.on_event(f.mt(at=1), state, f.at(1)).alerts == []
    eng.on_consent("13800138000", "ENT_A", None, state)
    got = [a.rule for a in eng.on_event(f.mt("mt-2", at=2), state, f.at(2)).alerts]
    assert got == ["consent.missing"]


def test_consent_is_per_enterprise(f: Factory) -> None:
    """Consent for one enterprise says nothing about another."""
    eng, state = f.engine(), DictState()
    eng.on_consent("13800138000", "ENT_B", _record(G, f.at(0)), state)
    assert state.consent("13800138000", "ENT_A") is None
    got = [a.rule for a in eng.on_event(f.mt(at=1), state, f.at(1)).alerts]
    assert got == ["consent.missing"]


def test_sub_millisecond_newer_grant_stands(f: Factory) -> None:
    """A granted record with a greater ts (by < 1 ms) stands over an older revocation."""
    eng, state = f.engine(), DictState()
    revoked_at = f.at(10)
    granted_at = revoked_at + dt.timedelta(microseconds=900)
    eng.on_consent("13800138000", "ENT_A", _record(X, revoked_at), state)
    eng.on_consent("13800138000", "ENT_A", _record(G, granted_at), state)
    current = state.consent("13800138000", "ENT_A")
    assert current is not None
    assert not current.revoked


# --- recent senders ---------------------------------------------------------------------

DAY = 86_400_000


def test_recent_sender_lookup_returns_latest_enterprise_for_the_port() -> None:
    """The latest mt (by ts) from a port names the enterprise for that port."""
    r = RecentSenders()
    assert r.record(RecentSender("1069", "ENT_A", 1_000), 8, DAY)
    assert r.record(RecentSender("1069", "ENT_B", 2_000), 8, DAY)
    assert r.lookup("1069", 3_000, DAY) == "ENT_B"
    assert r.lookup("1070", 3_000, DAY) is None


def test_recent_sender_older_mt_does_not_replace_a_newer_one() -> None:
    """An mt older than the remembered one for the port changes nothing."""
    r = RecentSenders()
    r.record(RecentSender("1069", "ENT_B", 2_000), 8, DAY)
    assert not r.record(RecentSender("1069", "ENT_A", 1_000), 8, DAY)
    assert r.lookup("1069", 3_000, DAY) == "ENT_B"


def test_recent_sender_same_entry_is_not_a_write() -> None:
    """Recording an identical sender reports no change."""
    r = RecentSenders()
    assert r.record(RecentSender("1069", "ENT_A", 1_000), 8, DAY)
    assert not r.record(RecentSender("1069", "ENT_A", 1_000), 8, DAY)


def test_recent_senders_keep_at_most_capacity_ports() -> None:
    """Only the `capacity` most recent ports per msisdn are kept."""
    r = RecentSenders()
    for i in range(5):
        r.record(RecentSender(f"106{i}", f"ENT_{i}", 1_000 + i), 3, DAY)
    assert len(r.entries) == 3
    assert {e.port for e in r.entries} == {"1062", "1063", "1064"}
    assert r.lookup("1060", 2_000, DAY) is None
    assert r.lookup("1064", 2_000, DAY) == "ENT_4"


def test_recent_senders_forget_beyond_the_horizon() -> None:
    """An mt older than the horizon no longer attributes a reply."""
    r = RecentSenders()
    r.record(RecentSender("1069", "ENT_A", 0), 8, DAY)
    assert r.lookup("1069", DAY, DAY) == "ENT_A"
    assert r.lookup("1069", DAY + 1, DAY) is None
    r.record(RecentSender("1070", "ENT_B", 2 * DAY), 8, DAY)
    assert [e.port for e in r.entries] == ["1070"]


@given(
    st.lists(
        st.tuples(st.sampled_from(["1", "2", "3", "4", "5"]), st.integers(0, 10 * DAY)),
        max_size=30,
    ),
    st.integers(1, 4),
)
def test_recent_senders_stay_bounded(events: list[tuple[str, int]], capacity: int) -> None:
    """Whatever is recorded, at most `capacity` entries, one per port, are kept."""
    r = RecentSenders()
    for port, ts in events:
        r.record(RecentSender(port, "E", ts), capacity, DAY)
    assert len(r.entries) <= capacity
    assert len({e.port for e in r.entries}) == len(r.entries)


def test_recent_senders_encoding_round_trips() -> None:
    """The stored form of recent senders decodes to the same entries."""
    r = RecentSenders()
    r.record(RecentSender("1069", "ENT_A", 1), 8, DAY)
    r.record(RecentSender("1070", "ENT_B", 2), 8, DAY)
    assert RecentSenders.decode(r.encode()).entries == r.entries
    assert RecentSenders.decode(None).entries == []


def test_more_than_eight_ports_within_the_horizon_are_all_kept() -> None:
    """40 ports within the horizon: every one is kept and attributes a reply."""
    r = RecentSenders()
    for i in range(40):
        r.record(RecentSender(f"1069{i:04d}", f"ENT_{i}", 1_000 + i), 128, DAY)
    assert len(r.entries) == 40
    assert r.lookup("10690000", 2_000, DAY) == "ENT_0"  # the oldest is still there
    assert r.evicted == []


def test_the_cap_names_the_ports_it_pushed_out() -> None:
    r = RecentSenders()
    for i in range(5):
        r.record(RecentSender(f"106{i}", f"ENT_{i}", 1_000 + i), 3, DAY)
    assert r.lookup("1060", 2_000, DAY) is None
    assert r.was_evicted("1060") and r.was_evicted("1061")
    assert not r.was_evicted("1064")
    back = RecentSenders.decode(r.encode())
    assert back.entries == r.entries and back.evicted == ["1061", "1060"]
    r.record(RecentSender("1060", "ENT_0", 3_000), 3, DAY)  # it comes back
    assert not r.was_evicted("1060")
    assert r.lookup("1060", 3_000, DAY) == "ENT_0"


def test_the_evicted_names_are_bounded() -> None:
    from smsmon.rules.consent import EVICTED_KEEP

    r = RecentSenders()
    for i in range(200):
        r.record(RecentSender(f"p{i}", "E", i), 2, DAY)
    assert len(r.evicted) == EVICTED_KEEP
    assert r.evicted[0] == "p197"  # newest pushed out first


def test_values_written_before_the_evicted_names_still_decode() -> None:
    old = b'[["1069","ENT_A",1,null,0],["1070","ENT_B",2,"S",2]]'
    r = RecentSenders.decode(old)
    assert [e.port for e in r.entries] == ["1069", "1070"] and r.evicted == []
    assert r.encode() == old  # nothing pushed out: the old form is written


def test_an_implicit_grant_round_trips_and_old_values_still_decode() -> None:
    from smsmon.rules.consent import ImplicitConsent

    implicit = ConsentState(G, 7, ImplicitConsent("registration_default", "app:signup", None))
    assert implicit.encode().startswith(b"i:7:")
    assert ConsentState.decode(implicit.encode()) == implicit
    assert ConsentState.decode(b"g:7") == ConsentState(G, 7)
    assert ConsentState.decode(b"r:7") == ConsentState(X, 7)
    # a revocation carries no consent evidence
    assert ConsentState(X, 7, ImplicitConsent("implied")).encode() == b"r:7"


def test_the_same_grant_restated_with_other_evidence_is_applied() -> None:
    from smsmon.rules.consent import ImplicitConsent

    implicit = ConsentState(G, 5, ImplicitConsent("implied"))
    assert merge_consent(implicit, ConsentState(G, 5)) == Merge.APPLIED
    assert merge_consent(implicit, implicit) == Merge.SAME
