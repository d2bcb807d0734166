"""Deterministic test and demo traffic with its ground truth: the expected (event_id, rule) set.

Each story uses its own subscriber, so stories never share state and the expected alerts follow
from how the story was built, not from the engine (an oracle independent of the code under
test). Used by the integration tests, `smsmon sample` and the demo.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ENTERPRISES = [
    ("91330100MA2AAAAA1X", "淘宝"),
    ("91110000MA2BBBBB2Y", "京东"),
    ("91310000MA2CCCCC3Z", "拼多多"),
    ("91110105MA2DDDDD4W", "美团"),
    ("91440300MA2EEEEE5V", "招商银行"),
    ("91330100MA2FFFFF6U", "菜鸟"),
]
SHARED_PORT = "10690000"  # a third-party platform port carrying many enterprises


@dataclass
class Reference:
    """Reference records keyed as on the wire (key, value dict or None)."""

    ports: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)
    signatures: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)
    consent: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)


@dataclass
class Scenario:
    """Reference data, events in production order, and what must come out."""

    reference: Reference
    events: list[tuple[str, dict[str, Any]]]  # (key msisdn, event)
    expected: set[tuple[str, str]]  # (event_id, rule)
    unsubscribes: int = 0
    malformed: list[tuple[bytes | None, bytes, str]] = field(default_factory=list)


def _ts(base: dt.datetime, seconds: float) -> str:
    return (base + dt.timedelta(seconds=seconds)).isoformat()


class Builder:
    """Builds a Scenario from stories; call `build()` with the number of stories."""

    def __init__(self, seed: int, base: dt.datetime | None = None) -> None:
        self.rng = random.Random(seed)
        # A fixed, allowed local hour (Double 11 pre-sale, 10:00 Asia/Shanghai), so that the
        # quiet-hours rule gives the same verdicts whenever the tests run.
        self.base = base or dt.datetime.fromisoformat("2026-10-20T10:00:00+08:00")
        self.ref = Reference()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.expected: set[tuple[str, str]] = set()
        self.unsubscribes = 0
        self._n = 0
        self._msisdn = 13_800_000_000 + self.rng.randrange(1_000_000) * 100
        self.ent: dict[str, dict[str, Any]] = {}
        self._reference()

    # reference data: per enterprise one commercial (1066) and one notification (1069) port
    def _reference(self) -> None:
        for i, (uscc, name) in enumerate(ENTERPRISES):
            mkt, ntf = f"1066{i:04d}", f"1069{i + 1:04d}"
            acct = f"acct-{i}"
            self.ent[name] = {"id": uscc, "mkt": mkt, "ntf": ntf, "acct": acct}
            self.ref.ports.append(
                (
                    mkt,
                    {
                        "port": mkt,
                        "enterprise": uscc,
                        "accounts": [acct],
                        "categories": ["marketing", "notification"],
                        "status": "active",
                    },
                )
            )
            self.ref.ports.append(
                (
                    ntf,
                    {
                        "port": ntf,
                        "enterprise": uscc,
                        "accounts": [acct],
                        "categories": ["notification", "verification"],
                        "status": "active",
                    },
                )
            )
            self.ref.signatures.append(
                (
                    name,
                    {
                        "signature": name,
                        "enterprise": uscc,
                        "ports": [mkt, ntf, SHARED_PORT],
                        "status": "active",
                    },
                )
            )
        self.ref.ports.append(
            (
                SHARED_PORT,
                {
                    "port": SHARED_PORT,
                    "enterprise": "91330100MA2PLATF07T",
                    "accounts": ["platform-1"],
                    "categories": ["marketing", "notification", "verification"],
                    "status": "active",
                    "shared": True,
                },
            )
        )
        self.ref.ports.append(
            (
                "10668888",
                {
                    "port": "10668888",
                    "enterprise": ENTERPRISES[0][0],
                    "accounts": ["acct-0"],
                    "categories": ["marketing"],
                    "status": "suspended",
                },
            )
        )
        self.ref.signatures.append(
            (
                "旧签名",
                {
                    "signature": "旧签名",
                    "enterprise": ENTERPRISES[0][0],
                    "ports": [],
                    "status": "revoked",
                },
            )
        )

    def _next_msisdn(self) -> str:
        self._msisdn += 1
        return str(self._msisdn)

    def _grant(self, msisdn: str, uscc: str, at: float) -> None:
        self.ref.consent.append(
            (
                f"{msisdn}|{uscc}",
                {
                    "msisdn": msisdn,
                    "enterprise": uscc,
                    "status": "granted",
                    "ts": _ts(self.base - dt.timedelta(days=30), at),
                },
            )
        )

    def _mt(
        self,
        msisdn: str,
        t: float,
        *,
        port: str,
        account: str,
        category: str,
        text: str,
        rules: tuple[str, ...] = (),
        signature: str | None = None,
    ) -> str:
        self._n += 1
        eid = f"ev-{self._n:07d}"
        ev: dict[str, Any] = {
            "event_id": eid,
            "ts": _ts(self.base, t),
            "kind": "mt",
            "gateway": f"gw-{self._n % 3}",
            "port": port,
            "msisdn": self.rng.choice([msisdn, "+86" + msisdn, "86 " + msisdn]),
            "account": account,
            "category": category,
            "text": text,
        }
        if signature is not None:
            ev["signature"] = signature
        self.events.append((msisdn, ev))
        self.expected.update((eid, r) for r in rules)
        return eid

    def _mo(self, msisdn: str, t: float, port: str, text: str) -> None:
        self._n += 1
        self.events.append(
            (
                msisdn,
                {
                    "event_id": f"ev-{self._n:07d}",
                    "ts": _ts(self.base, t),
                    "kind": "mo",
                    "gateway": "gw-mo",
                    "port": port,
                    "msisdn": msisdn,
                    "text": text,
                },
            )
        )

    def story(self, t: float) -> None:
        """Append one randomly chosen story starting at offset `t` seconds."""
        name = self.rng.choice([n for _, n in ENTERPRISES])
        e = self.ent[name]
        m = self._next_msisdn()
        kind = self.rng.randrange(19)
        mk = f"【{name}】双11预售开启,满300减50,回T退订"
        nt = f"【{name}】您的订单已发货,请注意查收"
        if kind == 0:  # clean marketing with consent, on an extension of the port
            self._grant(m, e["id"], t)
            self._mt(m, t, port=e["mkt"] + "0123", account=e["acct"], category="marketing", text=mk)
        elif kind == 1:  # clean notification
            self._mt(m, t, port=e["ntf"], account=e["acct"], category="notification", text=nt)
        elif kind == 2:  # unregistered port: also outside the signature's registered ports
            self._mt(
                m,
                t,
                port="10611111",
                account=e["acct"],
                category="notification",
                text=nt,
                rules=("port.unregistered", "signature.scope"),
            )
        elif kind == 3:  # suspended port (enterprise 0), marketing with consent
            self._grant(m, ENTERPRISES[0][0], t)
            self._mt(
                m,
                t,
                port="10668888",
                account="acct-0",
                category="marketing",
                text="【淘宝】限时抢购,回TD退订",
                rules=("port.suspended", "signature.scope"),
            )
        elif kind == 4:  # sublet: an account not granted the port
            self._mt(
                m,
                t,
                port=e["ntf"],
                account="reseller-9",
                category="notification",
                text=nt,
                rules=("port.account",),
            )
        elif kind == 5:  # marketing on a notification port
            self._grant(m, e["id"], t)
            self._mt(
                m,
                t,
                port=e["ntf"],
                account=e["acct"],
                category="marketing",
                text=mk,
                rules=("port.category",),
            )
        elif kind == 6:  # no signature at all
            self._mt(
                m,
                t,
                port=e["ntf"],
                account=e["acct"],
                category="notification",
                text="您的订单已发货",
                rules=("signature.missing",),
            )
        elif kind == 7:  # unregistered signature, trailing form
            self._mt(
                m,
                t,
                port=e["ntf"],
                account=e["acct"],
                category="notification",
                text="您的订单已发货【某某商城】",
                rules=("signature.unregistered",),
            )
        elif kind == 8:  # revoked signature in the field
            self._mt(
                m,
                t,
                port="10660000",
                account="acct-0",
                category="notification",
                text="账户提醒",
                signature="【旧签名】",
                rules=("signature.unregistered",),
            )
        elif kind == 9:  # another enterprise's signature on this port
            other = self.ent[self.rng.choice([n for _, n in ENTERPRISES if n != name])]
            other_name = next(n for n, v in self.ent.items() if v is other)
            self._mt(
                m,
                t,
                port=e["ntf"],
                account=e["acct"],
                category="notification",
                text=f"【{other_name}】您的订单已发货",
                rules=("signature.scope",),
            )
        elif kind == 10:  # marketing without consent
            self._mt(
                m,
                t,
                port=e["mkt"],
                account=e["acct"],
                category="marketing",
                text=mk,
                rules=("consent.missing",),
            )
        elif kind == 11:  # unsubscribe by reply, then marketing again: consent.revoked
            self._grant(m, e["id"], t)
            self._mt(m, t, port=e["mkt"], account=e["acct"], category="marketing", text=mk)
            self._mo(m, t + 5, e["mkt"] + "0123", self.rng.choice(["TD", "退订", " t ", "Ｔ"]))
            self.unsubscribes += 1
            self._mt(
                m,
                t + 9,
                port=e["mkt"],
                account=e["acct"],
                category="marketing",
                text=mk,
                rules=("consent.revoked",),
            )
        elif kind == 12:  # revoked by a consent record
            self._grant(m, e["id"], t)
            self.ref.consent.append(
                (
                    f"{m}|{e['id']}",
                    {
                        "msisdn": m,
                        "enterprise": e["id"],
                        "status": "revoked",
                        "ts": _ts(self.base - dt.timedelta(days=1), t),
                    },
                )
            )
            self._mt(
                m,
                t,
                port=e["mkt"],
                account=e["acct"],
                category="marketing",
                text=mk,
                rules=("consent.revoked",),
            )
        elif kind == 13:  # shared platform port: fine, consent per the signature's enterprise
            self._grant(m, e["id"], t)
            self._mt(
                m, t, port=SHARED_PORT + "77", account="platform-1", category="marketing", text=mk
            )
        elif kind == 14:  # unsubscribe on the shared port goes to the latest sender there
            self._grant(m, e["id"], t)
            self._mt(m, t, port=SHARED_PORT, account="platform-1", category="marketing", text=mk)
            self._mo(m, t + 3, SHARED_PORT, "退订,别再发了")
            self.unsubscribes += 1
            self._mt(
                m,
                t + 7,
                port=SHARED_PORT,
                account="platform-1",
                category="marketing",
                text=mk,
                rules=("consent.revoked",),
            )
        else:  # a verification code
            self._mt(
                m,
                t,
                port=e["ntf"],
                account=e["acct"],
                category="verification",
                text=f"【{name}】验证码{self.rng.randrange(10**6):06d},5分钟内有效",
            )

    def build(self, stories: int, spacing_seconds: float = 1.0) -> Scenario:
        for i in range(stories):
            self.story(i * spacing_seconds)
        return Scenario(
            self.ref, self.events, self.expected, self.unsubscribes, malformed_inputs(self.base)
        )


def malformed_inputs(base: dt.datetime) -> list[tuple[bytes | None, bytes, str]]:
    """(key, value, expected dead-letter reason) for a spread of broken events."""
    good = {
        "event_id": "bad-x",
        "ts": base.isoformat(),
        "kind": "mo",
        "gateway": "g",
        "port": "10690001",
        "msisdn": "13912345678",
        "text": "hi",
    }

    def var(**kw: Any) -> bytes:
        d = dict(good)
        for k, v in kw.items():
            if v is _DROP:
                d.pop(k)
            else:
                d[k] = v
        return json.dumps(d, ensure_ascii=False).encode()

    return [
        (b"13912345678", b"{not json", "json"),
        (b"13912345678", b"\xff\xfe\x00garbage", "encoding"),
        (b"13912345678", var(msisdn="12345"), "schema:msisdn"),
        (b"13912345678", var(ts="yesterday"), "schema:ts"),
        (b"13912345678", var(ts=1234), "schema:ts"),
        (b"13912345678", var(kind="fax"), "schema:kind"),
        (b"13912345678", var(event_id=42), "schema:event_id"),
        (b"13912345678", var(text=_DROP), "schema:text"),
        (b"13912345678", var(port="10a69"), "schema:port"),
        (b"13700000000", var(), "schema:key"),
        (b"13912345678", b"[1,2,3]", "schema:value"),
        (b"13912345678", var(text="x" * 70_000), "too_large"),
    ]


class _Drop:
    pass


_DROP = _Drop()


def events_jsonl(scenario: Scenario) -> Iterator[str]:
    """The scenario's events as JSON lines (for files and the audit)."""
    for _, ev in scenario.events:
        yield json.dumps(ev, ensure_ascii=False)
