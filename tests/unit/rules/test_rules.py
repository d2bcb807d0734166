"""The rules table for mt events: port, signature and consent rules, firing and not firing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from smsmon.contract.models import ConsentStatus, MtEvent, Severity
from smsmon.rules import catalog as R
from smsmon.rules.compliance import MtVerdict, check_mt, derive_enterprise
from smsmon.rules.consent import ConsentState
from smsmon.rules.reference import ReferenceBook

if TYPE_CHECKING:
    from tests.unit.conftest import Factory

pytestmark = pytest.mark.unit

ConsentLookup = Callable[[str, str], ConsentState | None]

GRANTED = ConsentState(ConsentStatus.GRANTED, 1)
REVOKED = ConsentState(ConsentStatus.REVOKED, 1)


def consents(**by_enterprise: ConsentState) -> ConsentLookup:
    """Consent lookup for the default msisdn, by enterprise."""

    def lookup(msisdn: str, enterprise: str) -> ConsentState | None:
        assert msisdn == "13800138000"
        return by_enterprise.get(enterprise)

    return lookup


ALL_GRANTED = consents(ENT_A=GRANTED, ENT_B=GRANTED, ENT_C=GRANTED)
NO_CONSENT = consents()


def rules(verdict: MtVerdict) -> list[str]:
    return sorted(f.rule.id for f in verdict.findings)


def check(event: MtEvent, book: ReferenceBook, consent: ConsentLookup = ALL_GRANTED) -> list[str]:
    return rules(check_mt(event, book, consent))


# --- catalog ----------------------------------------------------------------------------


def test_rule_catalog_matches_the_contract_table() -> None:
    """Every rule of the contract exists with its id and severity, and no other per-message rule."""
    expected = {
        "port.unregistered": Severity.CRITICAL,
        "port.suspended": Severity.CRITICAL,
        "port.account": Severity.CRITICAL,
        "port.category": Severity.MAJOR,
        "signature.missing": Severity.MINOR,
        "signature.unregistered": Severity.CRITICAL,
        "signature.scope": Severity.MAJOR,
        "consent.missing": Severity.MAJOR,
        "consent.revoked": Severity.CRITICAL,
        "consent.implicit": Severity.MAJOR,  # contract v1, additive
        # content rules (contract v1, additive)
        "content.optout_missing": Severity.MAJOR,
        "content.misdeclared": Severity.MAJOR,
        "time.quiet_hours": Severity.MINOR,
    }
    aggregate = {"volume.spike", "recipient.flood", "port.sublet", "complaint.rate"}
    assert {r.id: r.severity for r in R.PER_MESSAGE_RULES} == expected
    by_id = {k: v.severity for k, v in R.RULES_BY_ID.items()}
    assert {k: v for k, v in by_id.items() if k not in aggregate} == expected


def test_compliant_marketing_message_yields_no_finding(f: Factory) -> None:
    """Registered port, account, category, signature and granted consent: no alert."""
    v = check_mt(f.mt(), f.book(), ALL_GRANTED)
    assert v.findings == []
    assert v.enterprise == "ENT_A"
    assert v.signature == "taobao"
    assert v.port_key == "10690001"


# --- port rules -------------------------------------------------------------------------


def test_port_unregistered_fires_when_no_registered_code_is_a_prefix(f: Factory) -> None:
    """port.unregistered: no P."""
    assert check(f.mt(port="95555"), f.book()) == ["port.unregistered"]


def test_port_unregistered_does_not_fire_with_a_prefix_match(f: Factory) -> None:
    """A registered code plus extension is a registered port."""
    assert "port.unregistered" not in check(f.mt(port="10690001999999"), f.book())
    assert "port.unregistered" not in check(f.mt(port="10690001"), f.book())


def test_a_longer_port_code_is_not_a_prefix_of_a_shorter_event_port(f: Factory) -> None:
    """Registered 10690001 does not match event port 1069000 (prefix goes the other way)."""
    assert check(f.mt(port="1069000"), f.book()) == ["port.unregistered"]


def test_port_suspended_fires_only_for_a_suspended_port(f: Factory) -> None:
    """port.suspended: P exists and is suspended; active ports do not fire it."""
    suspended = f.book(ports=[f.port(status="suspended")])
    assert check(f.mt(), suspended) == ["port.suspended"]
    assert "port.suspended" not in check(f.mt(), f.book())
    assert "port.suspended" not in check(f.mt(port="95555"), f.book())


def test_port_account_fires_when_account_not_granted_the_port(f: Factory) -> None:
    """port.account: the account is not among P.accounts (sublet/resale)."""
    assert check(f.mt(account="reseller_9"), f.book()) == ["port.account"]
    no_accounts = f.book(ports=[f.port(accounts=())])
    assert check(f.mt(), no_accounts) == ["port.account"]


def test_port_account_does_not_fire_for_a_granted_account(f: Factory) -> None:
    """An account among several granted ones is fine."""
    book = f.book(ports=[f.port(accounts=("acc_x", "acc_a", "acc_y"))])
    assert check(f.mt(account="acc_a"), book) == []


def test_port_category_fires_when_category_not_allowed(f: Factory) -> None:
    """port.category: the declared category is not among P.categories."""
    book = f.book(ports=[f.port(categories=("notification", "verification"))])
    assert check(f.mt(category="marketing"), book) == ["port.category"]
    assert check(f.mt(category="notification"), book) == []
    nothing_allowed = f.book(ports=[f.port(categories=())])
    assert check(f.mt(category="verification"), nothing_allowed) == ["port.category"]


def test_port_rules_need_a_port_record(f: Factory) -> None:
    """Without P only port.unregistered fires among the port rules."""
    got = check(f.mt(port="95555", account="nobody", category="verification"), f.book())
    assert got == ["port.unregistered"]


def test_every_broken_port_rule_yields_its_own_finding(f: Factory) -> None:
    """A suspended port used by another account for a forbidden category yields three findings."""
    book = f.book(ports=[f.port(status="suspended", categories=("notification",))])
    assert check(f.mt(account="other"), book) == ["port.account", "port.category", "port.suspended"]


# --- longest prefix ---------------------------------------------------------------------


def test_longest_registered_prefix_is_the_port_record(f: Factory) -> None:
    """With 1069 and 10690001 registered, 106900011234 matches 10690001."""
    short = f.port("1069", "ENT_SHORT", accounts=("acc_short",))
    long = f.port("10690001", "ENT_A")
    book = f.book(ports=[short, long])
    assert book.port_for("106900011234") == long
    assert book.port_for("106900021234") == short
    assert book.port_for("1069") == short
    assert book.port_for("106") is None
    v = check_mt(f.mt(port="106900011234"), book, ALL_GRANTED)
    assert v.port_key == "10690001"
    assert v.findings == []


def test_longest_prefix_is_independent_of_insertion_order(f: Factory) -> None:
    """The longer code wins whichever was registered first."""
    short = f.port("1069", "ENT_SHORT")
    long = f.port("10690001", "ENT_A")
    book = f.book(ports=[long, short])
    assert book.port_for("106900011234") == long


def test_deleting_a_port_falls_back_to_the_next_longest_prefix(f: Factory) -> None:
    """A port tombstone removes the code; lookups fall back to the shorter registered prefix."""
    short = f.port("1069", "ENT_SHORT")
    long = f.port("10690001", "ENT_A")
    book = f.book(ports=[short, long])
    book.put_port("10690001", None)
    assert book.port_for("106900011234") == short
    book.put_port("1069", None)
    assert book.port_for("106900011234") is None


def test_replacing_a_port_record_takes_effect(f: Factory) -> None:
    """A newer record for the same code replaces the old one."""
    book = f.book()
    book.put_port("10690001", f.port(status="suspended"))
    assert check(f.mt(), book) == ["port.suspended"]


def test_account_is_checked_against_the_longest_prefix_record(f: Factory) -> None:
    """An account granted only the shorter code is not granted the longer one."""
    book = f.book(
        ports=[
            f.port("1069", "ENT_A", accounts=("acc_short",)),
            f.port("10690001", "ENT_A", accounts=("acc_a",)),
        ]
    )
    assert check(f.mt(port="106900011234", account="acc_short"), book) == ["port.account"]


# --- signature parsing and registration -------------------------------------------------


def test_signature_missing_fires_without_field_or_brackets(f: Factory) -> None:
    """signature.missing: no field, no leading or trailing 【…】."""
    assert check(f.mt(text="spring sale, 20% off"), f.book()) == ["signature.missing"]
    assert check(f.mt(text="spring 【Taobao】 sale"), f.book()) == ["signature.missing"]


def test_empty_brackets_are_no_signature(f: Factory) -> None:
    """An empty 【】 is no signature: signature.missing, not signature.unregistered."""
    assert check(f.mt(text="【】spring sale"), f.book()) == ["signature.missing"]
    assert check(f.mt(text="spring sale【 】"), f.book()) == ["signature.missing"]


def test_trailing_signature_is_recognised(f: Factory) -> None:
    """A trailing 【…】 is the signature when there is no leading one."""
    v = check_mt(f.mt(text="spring sale【Taobao】"), f.book(), ALL_GRANTED)
    assert v.signature == "taobao"
    assert v.findings == []


def test_leading_signature_wins_over_trailing(f: Factory) -> None:
    """With both a leading and a trailing 【…】, the leading one is the signature."""
    v = check_mt(f.mt(text="【Taobao】spring sale【Unknown】"), f.book(), ALL_GRANTED)
    assert v.signature == "taobao"
    assert v.findings == []


def test_signature_field_wins_over_the_text(f: Factory) -> None:
    """The signature field, when present, is the signature even if the text has another."""
    v = check_mt(f.mt(text="【Unknown】spring sale", signature="Taobao"), f.book(), ALL_GRANTED)
    assert v.signature == "taobao"
    assert v.findings == []
    v2 = check_mt(f.mt(text="【Taobao】spring sale", signature="Unknown"), f.book(), ALL_GRANTED)
    assert v2.signature == "unknown"
    assert rules(v2) == ["signature.unregistered"]


@pytest.mark.parametrize(
    "text", ["【 Taobao 】sale", "【TAOBAO】sale", "【ＴＡＯＢＡＯ】sale", "sale【taobao。】"]
)
def test_signature_is_matched_after_normalisation(f: Factory, text: str) -> None:
    """【 Taobao 】, 【TAOBAO】 and full-width forms match the registered signature 'taobao'."""
    book = f.book(sigs=[f.sig("taobao")])
    v = check_mt(f.mt(text=text), book, ALL_GRANTED)
    assert v.signature == "taobao"
    assert v.findings == []


def test_signature_unregistered_fires_for_an_unknown_signature(f: Factory) -> None:
    """signature.unregistered: a signature without S."""
    assert check(f.mt(text="【Pinduoduo】sale"), f.book()) == ["signature.unregistered"]


def test_signature_unregistered_fires_for_a_revoked_signature(f: Factory) -> None:
    """signature.unregistered: S exists but is revoked (and no scope check on it)."""
    book = f.book(sigs=[f.sig(status="revoked", ports=("95555",), enterprise="ENT_B")])
    assert check(f.mt(), book, consents(ENT_B=GRANTED)) == ["signature.unregistered"]


def test_signature_unregistered_does_not_fire_for_an_active_signature(f: Factory) -> None:
    """An active registered signature passes signature.unregistered."""
    assert "signature.unregistered" not in check(f.mt(), f.book())


def test_deleted_signature_is_unregistered(f: Factory) -> None:
    """A signature tombstone makes the signature unregistered again."""
    book = f.book()
    book.put_signature("taobao", None)
    assert "signature.unregistered" in check(f.mt(), book)


# --- signature.scope --------------------------------------------------------------------


def test_scope_fires_when_port_not_among_signature_ports(f: Factory) -> None:
    """signature.scope: S.ports non-empty and P's registered code not among them."""
    book = f.book(
        ports=[f.port("10690001"), f.port("10690002")],
        sigs=[f.sig(ports=("10690002",))],
    )
    assert check(f.mt(port="106900011234"), book) == ["signature.scope"]


def test_scope_uses_the_registered_code_not_the_extension(f: Factory) -> None:
    """S.ports lists registered codes: an extension of a listed code is in scope."""
    book = f.book(sigs=[f.sig(ports=("10690001",))])
    assert check(f.mt(port="106900011234"), book) == []


def test_scope_compares_with_the_longest_prefix_code(f: Factory) -> None:
    """If P is 10690001 (longest prefix), S.ports = [1069] does not include it."""
    book = f.book(
        ports=[f.port("1069"), f.port("10690001")],
        sigs=[f.sig(ports=("1069",))],
    )
    assert check(f.mt(port="106900011234"), book) == ["signature.scope"]


def test_scope_without_port_record_compares_the_events_port(f: Factory) -> None:
    """Without P, the event's port itself must be among S.ports."""
    in_scope = f.book(ports=[], sigs=[f.sig(ports=("95555",))])
    assert check(f.mt(port="95555"), in_scope) == ["port.unregistered"]
    out_of_scope = f.book(ports=[], sigs=[f.sig(ports=("95566",))])
    assert check(f.mt(port="95555"), out_of_scope) == ["port.unregistered", "signature.scope"]


def test_scope_with_empty_ports_allows_any_port_of_the_same_enterprise(f: Factory) -> None:
    """S.ports empty = any port: no scope alert when enterprises agree."""
    book = f.book(ports=[f.port("10690001"), f.port("10690002")], sigs=[f.sig(ports=())])
    assert check(f.mt(port="10690002"), book) == []


def test_scope_fires_when_non_shared_port_belongs_to_another_enterprise(f: Factory) -> None:
    """signature.scope: P exists, not shared, and its enterprise differs from S's."""
    book = f.book(ports=[f.port(enterprise="ENT_B")], sigs=[f.sig(enterprise="ENT_A")])
    assert check(f.mt(), book) == ["signature.scope"]


def test_scope_does_not_fire_for_enterprise_mismatch_on_a_shared_port(f: Factory) -> None:
    """A shared platform port carries other enterprises' signatures: no mismatch alert."""
    book = f.book(
        ports=[f.port(enterprise="PLATFORM", shared=True)], sigs=[f.sig(enterprise="ENT_A")]
    )
    assert check(f.mt(), book) == []


def test_scope_on_a_shared_port_still_checks_signature_ports(f: Factory) -> None:
    """Sharing waives the enterprise comparison, not the S.ports list."""
    book = f.book(
        ports=[f.port("10690001", "PLATFORM", shared=True), f.port("10690002", "ENT_A")],
        sigs=[f.sig(ports=("10690002",))],
    )
    assert check(f.mt(port="106900011234"), book) == ["signature.scope"]


def test_scope_yields_one_finding_when_both_branches_hold(f: Factory) -> None:
    """Out of S.ports and on another enterprise's port: still one signature.scope alert."""
    book = f.book(
        ports=[f.port("10690001", "ENT_B"), f.port("10690002", "ENT_A")],
        sigs=[f.sig(enterprise="ENT_A", ports=("10690002",))],
    )
    assert check(f.mt(port="106900011234"), book) == ["signature.scope"]


def test_scope_does_not_apply_to_revoked_or_missing_signatures(f: Factory) -> None:
    """signature.scope needs an active S."""
    revoked = f.book(
        ports=[f.port(enterprise="ENT_B")], sigs=[f.sig(status="revoked", ports=("95555",))]
    )
    assert "signature.scope" not in check(f.mt(), revoked)
    unknown = f.book(ports=[f.port(enterprise="ENT_B")], sigs=[])
    assert "signature.scope" not in check(f.mt(), unknown)


# --- enterprise derivation --------------------------------------------------------------


def test_enterprise_is_the_signatures_of_any_status(f: Factory) -> None:
    """E = S's enterprise if S exists, whatever its status, before P's."""
    port = f.port(enterprise="ENT_P")
    assert derive_enterprise(port, f.sig(enterprise="ENT_S")) == "ENT_S"
    assert derive_enterprise(port, f.sig(enterprise="ENT_S", status="revoked")) == "ENT_S"
    assert derive_enterprise(None, f.sig(enterprise="ENT_S")) == "ENT_S"
    shared = f.port(enterprise="PLATFORM", shared=True)
    assert derive_enterprise(shared, f.sig(enterprise="ENT_S")) == "ENT_S"


def test_enterprise_falls_back_to_a_non_shared_port(f: Factory) -> None:
    """Without S, E = P's enterprise if P is not shared; otherwise unknown."""
    assert derive_enterprise(f.port(enterprise="ENT_P"), None) == "ENT_P"
    assert derive_enterprise(f.port(enterprise="PLATFORM", shared=True), None) is None
    assert derive_enterprise(None, None) is None


def test_verdict_enterprise_from_revoked_signature(f: Factory) -> None:
    """A revoked signature still names E for the consent rules."""
    book = f.book(
        ports=[f.port(enterprise="ENT_B")], sigs=[f.sig("Taobao", "ENT_A", status="revoked")]
    )
    v = check_mt(f.mt(), book, consents(ENT_A=REVOKED, ENT_B=GRANTED))
    assert v.enterprise == "ENT_A"
    assert rules(v) == ["consent.revoked", "signature.unregistered"]


def test_verdict_enterprise_from_unregistered_signature_falls_back_to_port(f: Factory) -> None:
    """An unregistered signature gives no S: E is the non-shared port's enterprise."""
    book = f.book(ports=[f.port(enterprise="ENT_B")], sigs=[])
    v = check_mt(f.mt(text="【Nobody】sale"), book, consents(ENT_B=REVOKED))
    assert v.enterprise == "ENT_B"
    assert rules(v) == ["consent.revoked", "signature.unregistered"]


# --- consent rules ----------------------------------------------------------------------


def test_consent_missing_fires_for_marketing_without_consent(f: Factory) -> None:
    """consent.missing: declared marketing, E known, no consent state for (msisdn, E)."""
    assert check(f.mt(), f.book(), NO_CONSENT) == ["consent.missing"]
    assert check(f.mt(), f.book(), consents(ENT_B=GRANTED)) == ["consent.missing"]


def test_consent_revoked_fires_for_marketing_after_revocation(f: Factory) -> None:
    """consent.revoked: declared marketing, E known, consent for (msisdn, E) revoked."""
    assert check(f.mt(), f.book(), consents(ENT_A=REVOKED)) == ["consent.revoked"]


def test_consent_revoked_applies_only_to_messages_at_or_after_the_revocation(
    f: Factory,
) -> None:
    """A revocation stamped after the message does not apply to it (replays judge as live)."""
    mt = f.mt(at=60.0)
    ts_us = (mt.ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    later = ConsentState(ConsentStatus.REVOKED, ts_us + 1)
    same = ConsentState(ConsentStatus.REVOKED, ts_us)
    assert check(mt, f.book(), consents(ENT_A=later)) == []
    assert check(mt, f.book(), consents(ENT_A=same)) == ["consent.revoked"]


def test_granted_consent_passes_marketing(f: Factory) -> None:
    """Granted consent for (msisdn, E): no consent alert."""
    assert check(f.mt(), f.book(), consents(ENT_A=GRANTED)) == []


@pytest.mark.parametrize("category", ["notification", "verification"])
def test_consent_rules_apply_only_to_declared_marketing(f: Factory, category: str) -> None:
    """Notification and verification messages are not checked against consent."""
    assert check(f.mt(category=category), f.book(), NO_CONSENT) == []
    assert check(f.mt(category=category), f.book(), consents(ENT_A=REVOKED)) == []


def test_consent_uses_the_signatures_enterprise_not_the_ports(f: Factory) -> None:
    """Consent is looked up for E = S's enterprise even on another enterprise's port."""
    book = f.book(ports=[f.port(enterprise="ENT_B")], sigs=[f.sig(enterprise="ENT_A")])
    got = check(f.mt(), book, consents(ENT_A=REVOKED, ENT_B=GRANTED))
    assert got == ["consent.revoked", "signature.scope"]


def test_consent_rules_need_a_known_enterprise_on_a_shared_port(f: Factory) -> None:
    """Shared port and no signature: E unknown, so no consent rule fires."""
    book = f.book(ports=[f.port(enterprise="PLATFORM", shared=True)], sigs=[])
    seen: list[tuple[str, str]] = []

    def lookup(msisdn: str, enterprise: str) -> ConsentState | None:
        seen.append((msisdn, enterprise))
        return REVOKED

    v = check_mt(f.mt(text="no signature here"), book, lookup)
    assert v.enterprise is None
    assert rules(v) == ["signature.missing"]
    assert seen == []


def test_consent_rules_need_a_known_enterprise_with_unknown_signature_on_shared_port(
    f: Factory,
) -> None:
    """Shared port and an unregistered signature: E unknown, no consent rule."""
    book = f.book(ports=[f.port(enterprise="PLATFORM", shared=True)], sigs=[])
    got = check(f.mt(text="【Nobody】sale"), book, NO_CONSENT)
    assert got == ["signature.unregistered"]


def test_consent_rules_need_a_known_enterprise_without_port_or_signature(f: Factory) -> None:
    """No P and no S: E unknown, so no consent rule fires."""
    got = check(f.mt(port="95555", text="sale"), f.book(), NO_CONSENT)
    assert got == ["port.unregistered", "signature.missing"]


def test_shared_port_with_registered_signature_checks_consent_for_the_signature(
    f: Factory,
) -> None:
    """On a shared port, E comes from S and consent is checked for it."""
    book = f.book(ports=[f.port(enterprise="PLATFORM", shared=True)], sigs=[f.sig()])
    assert check(f.mt(), book, NO_CONSENT) == ["consent.missing"]
    assert check(f.mt(), book, consents(PLATFORM=GRANTED)) == ["consent.missing"]


def test_every_rule_that_holds_yields_its_own_finding(f: Factory) -> None:
    """Several broken rules on one event: one finding per rule, no duplicates."""
    book = f.book(
        ports=[f.port(enterprise="ENT_B", status="suspended", categories=("notification",))],
        sigs=[f.sig(enterprise="ENT_A", ports=("95555",))],
    )
    v = check_mt(f.mt(account="reseller"), book, NO_CONSENT)
    assert rules(v) == [
        "consent.missing",
        "port.account",
        "port.category",
        "port.suspended",
        "signature.scope",
    ]
    assert all(fd.rule is R.RULES_BY_ID[fd.rule.id] for fd in v.findings)


def test_finding_details_never_carry_msisdn_or_text(f: Factory) -> None:
    """Finding details say what was expected and seen, without the msisdn or message text."""
    book = f.book(
        ports=[f.port(enterprise="ENT_B", status="suspended", categories=("notification",))],
        sigs=[f.sig(enterprise="ENT_A", ports=("95555",))],
    )
    ev = f.mt(account="reseller", text="【Taobao】secret-body-xyz")
    v = check_mt(ev, book, NO_CONSENT)
    assert v.findings
    for fd in v.findings:
        assert fd.detail
        assert ev.msisdn not in fd.detail
        assert "secret-body-xyz" not in fd.detail
