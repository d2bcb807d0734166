"""End to end: an unsubscribe is honoured however many senders came after it was
attributed to (退订仍遭骚扰), and marketing on a default consent is flagged (默认)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tests.integration.conftest import Env, wait_ready, wait_until
from tests.integration.test_compliance_pipeline import produce, read_all

pytestmark = pytest.mark.integration

SUBSCRIBER = "13800138123"
DEFAULTED = "13900139456"  # registered on a platform that ticked "consent" by default
T0 = dt.datetime(2026, 11, 11, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
SENDERS = 20


def enc(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def port(i: int) -> str:
    return f"10690090{i:02d}"


def mt(event_id: str, msisdn: str, i: int, seconds: int) -> tuple[bytes, bytes]:
    return msisdn.encode(), enc(
        {
            "event_id": event_id,
            "ts": (T0 + dt.timedelta(seconds=seconds)).isoformat(),
            "kind": "mt",
            "gateway": "gw1",
            "port": port(i),
            "msisdn": msisdn,
            "account": "platform",
            "category": "marketing",
            "text": f"【品牌{i}】双11会员日全场满300减50，回T退订",
        }
    )


def test_the_oldest_of_twenty_senders_is_unsubscribed_and_default_consent_is_flagged(
    kenv: Env,
) -> None:
    worker = kenv.start_worker()
    wait_ready(worker)
    ports = [
        (
            port(i).encode(),
            enc(
                {
                    "port": port(i),
                    "enterprise": "PLATFORM",
                    "accounts": ["platform"],
                    "categories": ["marketing"],
                    "status": "active",
                    "shared": True,
                }
            ),
        )
        for i in range(SENDERS)
    ]
    signatures = [
        (
            f"品牌{i}".encode(),
            enc({"signature": f"品牌{i}", "enterprise": f"ENT_{i}", "status": "active"}),
        )
        for i in range(SENDERS)
    ]
    granted = (T0 - dt.timedelta(days=30)).isoformat()
    consent = [
        (
            f"{SUBSCRIBER}|ENT_{i}".encode(),
            enc(
                {
                    "msisdn": SUBSCRIBER,
                    "enterprise": f"ENT_{i}",
                    "status": "granted",
                    "ts": granted,
                    "method": "web_form",
                }
            ),
        )
        for i in range(SENDERS)
    ]
    consent.append(
        (
            f"{DEFAULTED}|ENT_1".encode(),
            enc(
                {
                    "msisdn": DEFAULTED,
                    "enterprise": "ENT_1",
                    "status": "granted",
                    "ts": granted,
                    "source": "app-signup",
                    "method": "registration_default",
                    "proof_ref": "signup/2026-10-12/884",
                }
            ),
        )
    )
    produce(kenv.bootstrap, kenv.topic("sms.ref.ports"), list(ports))
    produce(kenv.bootstrap, kenv.topic("sms.ref.signatures"), list(signatures))
    produce(kenv.bootstrap, kenv.topic("sms.ref.consent"), list(consent))
    wait_until(
        lambda: worker.sample("smsmon_reference_entries", {"table": "consent"}) == len(consent),
        90,
        "consent loaded",
    )
    wait_until(
        lambda: worker.sample("smsmon_reference_entries", {"table": "signatures"}) == SENDERS,
        60,
        "signatures loaded",
    )

    # twenty senders write from twenty shared ports; the subscriber replies TD to the first
    # (more than the eight ports smsmon used to remember); that sender markets again
    events = [mt(f"mt-{i}", SUBSCRIBER, i, i) for i in range(SENDERS)]
    events.append(
        (
            SUBSCRIBER.encode(),
            enc(
                {
                    "event_id": "mo-td",
                    "ts": (T0 + dt.timedelta(seconds=100)).isoformat(),
                    "kind": "mo",
                    "gateway": "gw1",
                    "port": port(0),
                    "msisdn": SUBSCRIBER,
                    "text": "TD",
                }
            ),
        )
    )
    events.append(mt("mt-again", SUBSCRIBER, 0, 200))
    events.append(mt("mt-defaulted", DEFAULTED, 1, 210))
    produce(kenv.bootstrap, kenv.topic("sms.events"), events)

    def alerts() -> dict[tuple[str, str], dict[str, Any]] | None:
        got = {
            (a["event_id"], a["rule"]): a
            for a in (
                json.loads(r.value) for r in read_all(kenv.bootstrap, kenv.topic("sms.alerts"))
            )
        }
        done = ("mt-again", "consent.revoked") in got and (
            "mt-defaulted",
            "consent.implicit",
        ) in got
        return got if done else None

    got = wait_until(alerts, 120, "consent.revoked and consent.implicit published")
    consent_rules = {k for k in got if k[1].startswith("consent.")}
    assert consent_rules == {("mt-again", "consent.revoked"), ("mt-defaulted", "consent.implicit")}
    implicit = got[("mt-defaulted", "consent.implicit")]
    for evidence in ("registration_default", "app-signup", "signup/2026-10-12/884"):
        assert evidence in implicit["detail"]
    assert DEFAULTED not in json.dumps(implicit)  # hashed and masked only
    assert worker.sample("smsmon_unsubscribes_total", {"attributed": "true"}) == 1
    assert worker.sample("smsmon_unsubscribes_unattributed_total", {"reason": "evicted"}) == 0
    revocations = [
        json.loads(r.value)
        for r in read_all(kenv.bootstrap, kenv.topic("sms.ref.consent"))
        if r.value and json.loads(r.value).get("source") == "mo"
    ]
    assert [(r["msisdn"], r["enterprise"]) for r in revocations] == [(SUBSCRIBER, "ENT_0")]
