"""Per-message violations: an mt that breaks exactly the rules the expected set names."""

from __future__ import annotations

import random
from collections.abc import Callable

from smsmon.tools.simulator.audience import Audience
from smsmon.tools.simulator.kinds import (
    CONSENT_IMPLICIT,
    CONSENT_MISSING,
    CONSENT_REVOKED,
    MKT,
    NTF,
    PORT_ACCOUNT,
    PORT_CATEGORY,
    PORT_SUSPENDED,
    PORT_UNREGISTERED,
    SIGNATURE_MISSING,
    SIGNATURE_SCOPE,
    SIGNATURE_UNREGISTERED,
    VER,
    Record,
)
from smsmon.tools.simulator.names import UNREGISTERED_SIGNATURES
from smsmon.tools.simulator.population import Enterprise, Population, Route
from smsmon.tools.simulator.records import Emitter
from smsmon.tools.simulator.texts import Texts

VIOLATIONS = (
    "unregistered_port",
    "suspended_port",
    "account_not_on_port",
    "wrong_category",
    "missing_signature",
    "unregistered_signature",
    "revoked_signature",
    "foreign_signature",
    "marketing_without_consent",
    "marketing_after_unsubscribe",
    "marketing_on_implicit_consent",
)
"""Kinds of per-message violation sprinkled at `SimConfig.violation_rate`."""

_Make = Callable[[float, Enterprise, int], Record]


class Violations:
    """Makes the violating mt of the background traffic, from the run's traffic stream."""

    def __init__(
        self, pop: Population, rng: random.Random, out: Emitter, texts: Texts, audience: Audience
    ) -> None:
        self.pop = pop
        self.rng = rng
        self.out = out
        self.texts = texts
        self.audience = audience
        self.n_ent = len(pop.enterprises)
        self._suspended_owners = [x for x in pop.enterprises if x.suspended_port]
        self._revoked_owners = [x for x in pop.enterprises if x.revoked_signature]
        self._own_routes: dict[tuple[int, str], list[Route]] = {}
        # The kinds sent over the enterprise's own notification port.
        self._on_notification_port: dict[str, _Make] = {
            "unregistered_port": self._unregistered_port,
            "account_not_on_port": self._account_not_on_port,
            "missing_signature": self._missing_signature,
            "unregistered_signature": self._unregistered_signature,
            "foreign_signature": self._foreign_signature,
        }

    def mt(self, t: float, e: Enterprise) -> Record:
        """One mt from around enterprise `e` that breaks the rules named in the expected
        set, and no other rule.

        A kind the run cannot show at the moment (no suspended port, no revoked signature,
        nobody has revoked consent, everyone drawn has consent) gives way to another kind.
        """
        r = self.rng.random
        kind = VIOLATIONS[int(r() * len(VIOLATIONS))]
        self.out.counts[f"violation:{kind}"] += 1
        sub = int(r() * len(self.pop.msisdns))
        if kind == "suspended_port":
            if self._suspended_owners:
                return self._suspended_port(t, e, sub)
            kind = "account_not_on_port"
        if kind == "revoked_signature":
            if self._revoked_owners:
                return self._revoked_signature(t, e, sub)
            kind = "unregistered_signature"
        if kind == "marketing_after_unsubscribe":
            if self.audience.revoked_pairs:
                return self._after_unsubscribe(t)
            kind = "marketing_without_consent"
        if kind == "marketing_on_implicit_consent":
            found_sub = self._implicit_consenter(e.index)
            if found_sub is not None:
                route = self._own(e, e.mkt_port)
                return self.out.mt(t, found_sub, route, MKT, self.texts.marketing(e), e.index,
                                   (CONSENT_IMPLICIT,), sig_name=e.name)  # fmt: skip
            kind = "marketing_without_consent"
        if kind == "wrong_category":
            return self._wrong_category(t, e, sub)
        if kind == "marketing_without_consent":
            sub, found = self._without_consent(e.index, sub)
            if found:
                route = self._own(e, e.mkt_port)
                text = self.texts.marketing(e)
                return self.out.mt(
                    t, sub, route, MKT, text, e.index, (CONSENT_MISSING,), sig_name=e.name
                )
            kind = "missing_signature"
        return self._on_notification_port[kind](t, e, sub)

    def _own(self, e: Enterprise, code: str) -> Route:
        """A route of `e` over its own port `code`, drawn like its ordinary traffic."""
        routes = self._own_routes.get((e.index, code))
        if routes is None:
            routes = [r for r in e.routes[NTF] + e.routes[MKT] if r.code == code]
            self._own_routes[(e.index, code)] = routes
        return routes[int(self.rng.random() * len(routes))]

    def _other(self, ei: int) -> Enterprise:
        """Any enterprise but `ei`."""
        ents = self.pop.enterprises
        return ents[(ei + 1 + int(self.rng.random() * (len(ents) - 1))) % len(ents)]

    def _implicit_consenter(self, ei: int) -> int | None:
        """A subscriber whose standing consent to `ei` is a default or implied one."""
        pool = self.pop.implicit_consenters[ei]
        for _ in range(4 if pool else 0):
            s = pool[int(self.rng.random() * len(pool))]
            if s * self.n_ent + ei not in self.audience.revoked:
                return s
        return None

    def _without_consent(self, ei: int, sub: int) -> tuple[int, bool]:
        """`sub` or another subscriber who never consented to `ei`, and whether one was
        found; after 50 draws the last one drawn, unchecked."""
        granted, revoked = self.pop.granted, self.audience.revoked
        implicit = self.pop.implicit
        n_subs = len(self.pop.msisdns)
        for _ in range(50):
            key = sub * self.n_ent + ei
            if key not in granted and key not in revoked and key not in implicit:
                return sub, True
            sub = int(self.rng.random() * n_subs)
        return sub, False

    # -- kinds that pick their own enterprise or subscriber ---------------------------------

    def _suspended_port(self, t: float, e: Enterprise, sub: int) -> Record:
        if e.suspended_port is None:
            owners = self._suspended_owners
            e = owners[int(self.rng.random() * len(owners))]
        assert e.suspended_port is not None
        base = self._own(e, e.ntf_port)
        route = Route(e.suspended_port, e.suspended_port, base.account, base.ip, base.gateway,
                      False)  # fmt: skip
        return self.out.mt(t, sub, route, NTF, self.texts.notification(e), e.index,
                           (PORT_SUSPENDED,), sig_name=e.name)  # fmt: skip

    def _revoked_signature(self, t: float, e: Enterprise, sub: int) -> Record:
        if e.revoked_signature is None:
            owners = self._revoked_owners
            e = owners[int(self.rng.random() * len(owners))]
        old = e.revoked_signature
        assert old is not None
        route = self._own(e, e.ntf_port)
        if self.rng.random() < 0.5:
            text, field_ = self.texts.notification(e, old), None
        else:  # in the signature field, text without 【…】
            text, field_ = "账户提醒：您的会员权益即将到期", f"【{old}】"
        return self.out.mt(t, sub, route, NTF, text, e.index, (SIGNATURE_UNREGISTERED,),
                           signature=field_)  # fmt: skip

    def _after_unsubscribe(self, t: float) -> Record:
        """Marketing to a subscriber who revoked consent (before the start or by 退订)."""
        pairs = self.audience.revoked_pairs
        key = pairs[int(self.rng.random() * len(pairs))]
        sub, ei = divmod(key, self.n_ent)
        e = self.pop.enterprises[ei]
        route = self._own(e, e.mkt_port)
        return self.out.mt(t, sub, route, MKT, self.texts.marketing(e), ei, (CONSENT_REVOKED,),
                           sig_name=e.name)  # fmt: skip

    def _wrong_category(self, t: float, e: Enterprise, sub: int) -> Record:
        ei = e.index
        cons = self.audience.consenter(ei) if self.rng.random() < 0.5 else None
        if cons is not None:  # marketing on the notification port
            route = self._own(e, e.ntf_port)
            return self.out.mt(t, cons, route, MKT, self.texts.marketing(e), ei,
                               (PORT_CATEGORY,), sig_name=e.name)  # fmt: skip
        route = self._own(e, e.mkt_port)  # a verification code on the commercial port
        text = self.texts.verification(e.name)
        return self.out.mt(t, sub, route, VER, text, ei, (PORT_CATEGORY,))

    # -- kinds on the enterprise's own notification port ------------------------------------

    def _unregistered_port(self, t: float, e: Enterprise, sub: int) -> Record:
        route = self._own(e, e.ntf_port)
        codes = self.pop.unregistered_ports
        code = codes[int(self.rng.random() * len(codes))]
        route = Route(code, code, route.account, route.ip, route.gateway, False)
        # a signature registered for some ports is also out of scope on this one
        rules = (PORT_UNREGISTERED, SIGNATURE_SCOPE) if e.sig_ports else (PORT_UNREGISTERED,)
        return self.out.mt(t, sub, route, NTF, self.texts.notification(e), e.index, rules)

    def _account_not_on_port(self, t: float, e: Enterprise, sub: int) -> Record:
        route = self._own(e, e.ntf_port)
        other = self._other(e.index)
        acct = other.accounts[0]
        route = Route(route.code, route.port, acct, other.ips[acct][0], other.gateway[acct],
                      False)  # fmt: skip
        return self.out.mt(t, sub, route, NTF, self.texts.notification(e), e.index,
                           (PORT_ACCOUNT,))  # fmt: skip

    def _missing_signature(self, t: float, e: Enterprise, sub: int) -> Record:
        route = self._own(e, e.ntf_port)
        text = self.texts.unsigned_notification()
        return self.out.mt(t, sub, route, NTF, text, e.index, (SIGNATURE_MISSING,))

    def _unregistered_signature(self, t: float, e: Enterprise, sub: int) -> Record:
        route = self._own(e, e.ntf_port)
        fake = UNREGISTERED_SIGNATURES[int(self.rng.random() * len(UNREGISTERED_SIGNATURES))]
        text = self.texts.notification(e, fake)
        return self.out.mt(t, sub, route, NTF, text, e.index, (SIGNATURE_UNREGISTERED,))

    def _foreign_signature(self, t: float, e: Enterprise, sub: int) -> Record:
        """Another enterprise's signature on this enterprise's port."""
        route = self._own(e, e.ntf_port)
        other = self._other(e.index)
        text = self.texts.notification(other)
        return self.out.mt(t, sub, route, NTF, text, other.index, (SIGNATURE_SCOPE,))
