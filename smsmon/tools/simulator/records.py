"""The records themselves: mt, delivery reports, mo replies and 12321 complaints, numbered,
with what an mt brings along scheduled for later and the injected violations noted."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from smsmon.tools.simulator.audience import Audience
from smsmon.tools.simulator.clock import Clock
from smsmon.tools.simulator.config import SimConfig
from smsmon.tools.simulator.kinds import CATEGORIES, MKT, Record
from smsmon.tools.simulator.population import Population, Route
from smsmon.tools.simulator.schedule import Schedule
from smsmon.tools.simulator.texts import (
    COMPLAINT_TEXTS,
    DLR_STATUSES,
    REPLY_TEXTS,
    UNSUBSCRIBE_TEXTS,
)


class Emitter:
    """Builds the records of one run. `expected` collects (event_id, rule) of each injected
    violation; `counts` counts records by kind and whatever the scenarios count."""

    def __init__(
        self,
        cfg: SimConfig,
        pop: Population,
        rng: random.Random,
        clock: Clock,
        prefix: str,
        schedule: Schedule,
        audience: Audience,
    ) -> None:
        self.cfg = cfg
        self.pop = pop
        self.rng = rng
        self.clock = clock
        self.prefix = prefix  # event ids: unique per seed and start
        self.schedule = schedule
        self.audience = audience
        self.expected: list[tuple[str, str]] = []
        self.counts: Counter[str] = Counter()
        self.n = 0  # events so far
        self.nc = 0  # complaints so far

    def mt(
        self,
        t: float,
        sub: int,
        route: Route,
        c: int,
        text: str,
        ent: int,
        rules: tuple[str, ...],
        *,
        signature: str | None = None,
        sig_name: str | None = None,
    ) -> Record:
        """One mt of category `c` to subscriber `sub`; `ent` is the enterprise the rules
        derive (-1 unknown), for 退订; `rules` are the violations it was made to break;
        `sig_name` (a registered signature) lets a background complaint name it."""
        r = self.rng.random
        self.n += 1
        eid = f"{self.prefix}{self.n:08d}"
        m = self.pop.msisdns[sub]
        ev: dict[str, Any] = {
            "event_id": eid,
            "ts": self.clock.iso(t),
            "kind": "mt",
            "gateway": route.gateway,
            "port": route.port,
            "msisdn": ("+86" + m) if r() < self.cfg.msisdn_variant_prob else m,
            "account": route.account,
            "category": CATEGORIES[c],
            "text": text,
        }
        if signature is not None:
            ev["signature"] = signature
        n_chars = len(text)
        ev["segments"] = 1 if n_chars <= 70 else -(-n_chars // 67)
        ev["source_ip"] = route.ip
        if ent >= 0:
            self.audience.sent(sub, route, ent)
        self._follow_ups(t, sub, route, eid)
        if c == MKT:
            self._marketing_follow_ups(t, sub, route, ent, sig_name)
        if rules:
            self.expected.extend((eid, rule) for rule in rules)
            self.counts["violations"] += 1
        self.counts[CATEGORIES[c]] += 1
        return ("event", m, ev)

    def _follow_ups(self, t: float, sub: int, route: Route, eid: str) -> None:
        """Maybe a delivery report (seconds later) and a reply (minutes later)."""
        cfg, r, schedule = self.cfg, self.rng.random, self.schedule
        if r() < cfg.dlr_fraction:
            schedule.push(t + 1.0 + self.rng.expovariate(0.2), self.dlr, (sub, route, eid))
        if r() < cfg.reply_prob:
            schedule.push(t + 5.0 + self.rng.expovariate(1 / 300), self.mo, (sub, route, False))

    def _marketing_follow_ups(
        self, t: float, sub: int, route: Route, ent: int, sig_name: str | None
    ) -> None:
        """Maybe a 退订 reply (minutes later) and a complaint (up to hours later)."""
        cfg, r, schedule = self.cfg, self.rng.random, self.schedule
        if r() < cfg.unsubscribe_prob:
            schedule.push(t + 5.0 + self.rng.expovariate(1 / 300), self.mo, (sub, route, True))
        if sig_name is not None and r() < cfg.complaint_prob:
            delay = 600.0 + r() * 6 * 3600
            schedule.push(t + delay, self.complaint, (sub, route.port, sig_name))
        self.audience.marketing_sent(sub, route, ent)

    def dlr(self, t: float, sub: int, route: Route, mt_id: str) -> Record:
        """The delivery report of mt `mt_id`."""
        self.n += 1
        m = self.pop.msisdns[sub]
        self.counts["dlr"] += 1
        status = DLR_STATUSES[int(self.rng.random() * len(DLR_STATUSES))]
        return (
            "event",
            m,
            {
                "event_id": f"{self.prefix}{self.n:08d}",
                "ts": self.clock.iso(t),
                "kind": "dlr",
                "gateway": route.gateway,
                "port": route.port,
                "msisdn": m,
                "status": status,
                "mt_event_id": mt_id,
            },
        )

    def mo(self, t: float, sub: int, route: Route, unsubscribe: bool) -> Record:
        """A reply of `sub` to the port of `route`: 退订 (revoking consent) or a chat."""
        r = self.rng.random
        self.n += 1
        m = self.pop.msisdns[sub]
        if unsubscribe:
            text = UNSUBSCRIBE_TEXTS[int(r() * len(UNSUBSCRIBE_TEXTS))]
            self.audience.unsubscribe(sub, route)
            self.counts["unsubscribes"] += 1
        else:
            text = REPLY_TEXTS[int(r() * len(REPLY_TEXTS))]
        self.counts["mo"] += 1
        return (
            "event",
            m,
            {
                "event_id": f"{self.prefix}{self.n:08d}",
                "ts": self.clock.iso(t),
                "kind": "mo",
                "gateway": route.gateway,
                "port": route.port,
                "msisdn": m,
                "text": text,
            },
        )

    def complaint(
        self, t: float, sub: int, port: str, sig: str, *, text: str | None = None
    ) -> Record:
        """A 12321 complaint of `sub` about marketing signed `sig` from `port`."""
        r = self.rng.random
        self.nc += 1
        m = self.pop.msisdns[sub]
        rec: dict[str, Any] = {
            "complaint_id": f"{self.prefix}c{self.nc:07d}",
            "ts": self.clock.iso(t),
            "msisdn": m,
        }
        x = r()
        if x < 0.75:  # the subscriber names the signature (and often the port)
            rec["signature"] = f"【{sig}】" if r() < 0.5 else sig
        if x < 0.5 or 0.75 <= x < 0.9:
            rec["port"] = port
        body = text if text is not None else COMPLAINT_TEXTS[int(r() * len(COMPLAINT_TEXTS))]
        if body is not None:
            rec["text"] = body
        rec["category"] = "marketing"
        self.counts["complaints"] += 1
        return ("complaint", m, rec)
