"""Injected anomalies: the plan (when, on whom), its ground truth, and playing it in a run.

Each anomaly scenario (bombing, sublet, spike, complaint wave) becomes `SimConfig.incidents`
incidents, spread round robin over the span after the warm-up; every subject an incident must
raise an alert on becomes one ground-truth row.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from smsmon.tools.simulator.audience import Audience
from smsmon.tools.simulator.clock import iso, local_hour
from smsmon.tools.simulator.config import SimConfig
from smsmon.tools.simulator.kinds import (
    MKT,
    NTF,
    PORT_ACCOUNT,
    RULE_COMPLAINTS,
    RULE_FLOOD,
    RULE_SPIKE,
    RULE_SUBLET,
    SIGNATURE_SCOPE,
    VER,
    Record,
)
from smsmon.tools.simulator.names import GATEWAYS, SUBLET_IP_BLOCK
from smsmon.tools.simulator.population import Enterprise, Population, Route
from smsmon.tools.simulator.rates import RateModel, double11
from smsmon.tools.simulator.records import Emitter
from smsmon.tools.simulator.schedule import Steps
from smsmon.tools.simulator.texts import COMPLAINT_TEXTS, Texts


@dataclass
class Incident:
    """One injected anomaly: when, on what, and how (params are for the run)."""

    scenario: str
    start: float  # offsets from the simulation start, seconds
    end: float
    subjects: list[tuple[str, str, str]]  # (rule, subject_type, subject); msisdn raw, internal
    params: dict[str, Any] = field(default_factory=dict)


_DURATIONS = {"bombing": 300.0, "sublet": 600.0, "spike": 300.0, "complaints": 900.0}


# -- the plan ---------------------------------------------------------------------------------


def plan(pop: Population, cfg: SimConfig, start: dt.datetime, tz: ZoneInfo) -> list[Incident]:
    """The incidents of `cfg`'s anomaly scenarios, in start order, from the `plan` stream."""
    rng = cfg.rng("plan")
    kinds = [s for s in ("bombing", "sublet", "spike", "complaints") if s in cfg.scenarios]
    order = [k for _ in range(cfg.incidents) for k in kinds]  # round robin: spread each type
    if not order:
        return []
    warmup = cfg.warmup if cfg.warmup is not None else min(3600.0, cfg.duration / 4)
    longest = max(_DURATIONS[k] for k in order)
    zone = cfg.duration - warmup - longest - 60.0
    if zone < 0:
        raise ValueError(
            f"duration {cfg.duration:.0f}s is too short for scenario(s) {', '.join(kinds)}: "
            f"need warmup {warmup:.0f}s + {longest:.0f}s + 60s"
        )
    slot = zone / len(order)
    planner = _Planner(pop, cfg, start, tz, rng)
    out: list[Incident] = []
    for i, kind in enumerate(order):
        dur = _DURATIONS[kind]
        jitter = rng.uniform(0, max(0.0, slot - dur)) if slot > dur else 0.0
        t0 = round(warmup + i * slot + jitter, 3)
        inc = Incident(kind, t0, t0 + dur, [])
        planner.choose[kind](inc)
        out.append(inc)
    return out


class _Planner:
    """Chooses each incident's subjects, each on a subscriber or enterprise not yet used
    (while there are any), so that incidents do not blur into one another."""

    def __init__(
        self,
        pop: Population,
        cfg: SimConfig,
        start: dt.datetime,
        tz: ZoneInfo,
        rng: random.Random,
    ) -> None:
        self.pop, self.cfg, self.start, self.tz, self.rng = pop, cfg, start, tz, rng
        self.model = RateModel(pop.enterprises, cfg)
        self.d11 = double11(cfg, start, tz)
        self.used_ent: set[int] = set()
        self.used_msisdn: set[int] = set()
        self.by_size = sorted(pop.enterprises, key=lambda e: -e.weight)
        self.choose: dict[str, Callable[[Incident], None]] = {
            "bombing": self._bombing,
            "sublet": self._sublet,
            "spike": self._spike,
            "complaints": self._complaints,
        }

    def _fresh(self, cands: list[Enterprise]) -> Enterprise:
        for e in cands:
            if e.index not in self.used_ent:
                self.used_ent.add(e.index)
                return e
        return cands[len(self.used_ent) % len(cands)]

    def _bombing(self, inc: Incident) -> None:
        """Verification codes from 12-20 senders flood one subscriber."""
        pop, rng = self.pop, self.rng
        while True:
            target = rng.randrange(len(pop.msisdns))
            if target not in self.used_msisdn:
                self.used_msisdn.add(target)
                break
        n = self.cfg.bombing_messages or rng.randint(60, 200)
        senders: list[tuple[int, Route]] = []
        cands = rng.sample(pop.enterprises, min(len(pop.enterprises), rng.randint(12, 20)))
        for e in cands:
            senders.append((e.index, rng.choice(e.routes[VER])))
        weights = [rng.paretovariate(1.5) for _ in senders]
        inc.subjects = [(RULE_FLOOD, "msisdn", pop.msisdns[target])]
        inc.params = {"target": target, "n": n, "senders": senders, "weights": weights}

    def _sublet(self, inc: Incident) -> None:
        """A small sender's notification port carries other enterprises' messages from
        accounts and addresses it was never registered for."""
        pop, rng = self.pop, self.rng
        cands = [
            e for e in self.by_size[::-1] if "max_per_minute" not in pop.ports[e.ntf_port]
        ] or self.by_size[::-1]
        victim = self._fresh(cands)
        others = [e for e in pop.enterprises if e.index != victim.index]
        foreign = rng.sample(others, min(len(others), rng.randint(4, 6)))
        n_acct = rng.randint(2, 3)
        accounts = [f"agent{rng.randrange(100, 999)}{k}" for k in range(n_acct)]
        ips = [
            f"{SUBLET_IP_BLOCK}.{rng.randrange(0, 255)}.{rng.randrange(1, 255)}" for _ in accounts
        ]
        inc.subjects = [(RULE_SUBLET, "port", victim.ntf_port)]
        inc.params = {
            "port": victim.ntf_port,
            "foreign": [e.index for e in foreign],
            "accounts": list(zip(accounts, ips, strict=True)),
            "gateway": rng.choice(GATEWAYS),
        }

    def _spike(self, inc: Incident) -> None:
        """A burst past the port's quota and far above the sender's normal volume."""
        # A mid-sized sender with a quota on its notification port (a code-pumping attack
        # or a runaway notification job): big enough to have a baseline, small enough that
        # the burst does not swamp the run.
        pop = self.pop
        cands = [e for e in self.by_size if "max_per_minute" in pop.ports[e.ntf_port]]
        cands = cands or self.by_size
        cands = cands[len(cands) // 2 :] + cands[: len(cands) // 2]
        e = self._fresh(cands)
        port = e.ntf_port
        quota = int(pop.ports[port].get("max_per_minute", 0))
        middle = inc.start + _DURATIONS["spike"] / 2
        hour = local_hour(self.start + dt.timedelta(seconds=middle), self.tz)
        boost = self.d11.factor(middle, hour) if self.d11 else 1.0
        normal = self.model.enterprise_rate(e, hour, boost) * 60
        per_min = max(1.5 * quota, 10.0 * normal, 60.0)
        account = self.rng.choice(e.accounts)
        inc.subjects = [
            (RULE_SPIKE, "port", port),
            (RULE_SPIKE, "signature", e.name),
            (RULE_SPIKE, "account", account),
        ]
        inc.params = {"enterprise": e.index, "account": account, "per_minute": per_min}

    def _complaints(self, inc: Incident) -> None:
        """A wave of 12321 complaints about a big marketing sender."""
        cands = sorted(self.pop.enterprises, key=lambda e: -e.weight * e.mix[MKT])
        e = self._fresh(cands)
        inc.subjects = [
            (RULE_COMPLAINTS, "signature", e.name),
            (RULE_COMPLAINTS, "port", e.mkt_port),
        ]
        inc.params = {"enterprise": e.index, "n": self.cfg.complaint_wave}


# -- ground truth -----------------------------------------------------------------------------


def truth_rows(
    start: dt.datetime, tz: ZoneInfo, incidents: list[Incident], cfg: SimConfig
) -> list[dict[str, Any]]:
    """One row per (incident, subject); an msisdn only masked and as the keyed hash."""
    hasher: Callable[[str], str] | None = None
    if cfg.msisdn_secret:
        from smsmon.contract.canonical import MsisdnHasher

        hasher = MsisdnHasher(cfg.msisdn_secret, cfg.msisdn_key_id)
    rows: list[dict[str, Any]] = []
    for inc in incidents:
        for rule, stype, subject in inc.subjects:
            row: dict[str, Any] = {
                "scenario": inc.scenario,
                "rule": rule,
                "subject_type": stype,
                "subject": subject,
                "start": iso(start, tz, inc.start),
                "end": iso(start, tz, inc.end),
            }
            if stype == "msisdn":
                row["subject"] = f"{subject[:3]}****{subject[-4:]}"
                row["msisdn_hash"] = hasher(subject) if hasher else None
            if inc.scenario == "bombing":
                row["count"] = inc.params["n"]
                row["senders"] = len(inc.params["senders"])
            elif inc.scenario == "spike":
                row["per_minute"] = round(inc.params["per_minute"])
            elif inc.scenario == "complaints":
                row["count"] = inc.params["n"]
            rows.append(row)
    return rows


# -- playing the plan in a run ----------------------------------------------------------------


class Injector:
    """Turns each planned incident into its steps (`steps`), drawing from the run's traffic
    stream as the steps come due."""

    def __init__(
        self,
        cfg: SimConfig,
        pop: Population,
        rng: random.Random,
        out: Emitter,
        texts: Texts,
        audience: Audience,
    ) -> None:
        self.cfg, self.pop, self.rng = cfg, pop, rng
        self.out, self.texts, self.audience = out, texts, audience
        self.complained: dict[int, set[int]] = {}  # by enterprise: who complained in a wave
        self._players: dict[str, Callable[[Incident], Steps]] = {
            "bombing": self._bombing,
            "sublet": self._sublet,
            "spike": self._spike,
            "complaints": self._complaints,
        }

    def steps(self, inc: Incident) -> Steps:
        """The steps of `inc`; nothing is drawn until the first is asked for."""
        return self._players[inc.scenario](inc)

    def _bombing(self, inc: Incident) -> Steps:
        p = inc.params
        rnd = self.rng.random
        senders: list[tuple[int, Route]] = p["senders"]
        n: int = p["n"]
        times = sorted(inc.start + rnd() * (inc.end - inc.start) for _ in range(n))
        # Every sender at least once, the rest by (heavy-tailed) weight.
        assign = list(range(len(senders)))
        assign += self.rng.choices(range(len(senders)), weights=p["weights"], k=n - len(assign))
        self.rng.shuffle(assign)
        for ti, si in zip(times, assign[:n], strict=False):
            yield ti, self._bomb_mt, (p["target"], senders[si])

    def _bomb_mt(self, t: float, target: int, sender: tuple[int, Route]) -> Record:
        ei, route = sender
        e = self.pop.enterprises[ei]
        return self.out.mt(t, target, route, VER, self.texts.verification(e.name), ei, ())

    def _sublet(self, inc: Incident) -> Steps:
        rate = self.cfg.sublet_per_minute / 60.0
        t = inc.start
        while rate > 0:
            t += self.rng.expovariate(rate)
            if t >= inc.end:
                break
            yield t, self._sublet_mt, (inc.params,)

    def _sublet_mt(self, t: float, p: dict[str, Any]) -> Record:
        r = self.rng.random
        o = self.pop.enterprises[p["foreign"][int(r() * len(p["foreign"]))]]
        acct, ip = p["accounts"][int(r() * len(p["accounts"]))]
        route = Route(p["port"], p["port"], acct, ip, p["gateway"], False)
        sub = int(r() * len(self.pop.msisdns))
        if r() < 0.7:
            c, text = NTF, self.texts.notification(o)
        else:
            c, text = VER, self.texts.verification(o.name)
        self.out.counts["sublet"] += 1
        return self.out.mt(t, sub, route, c, text, o.index, (PORT_ACCOUNT, SIGNATURE_SCOPE))

    def _spike(self, inc: Incident) -> Steps:
        p = inc.params
        n = max(1, round(p["per_minute"] * (inc.end - inc.start) / 60.0))
        rnd = self.rng.random
        times = sorted(inc.start + rnd() * (inc.end - inc.start) for _ in range(n))
        n_subs = len(self.pop.msisdns)
        subs = self.rng.sample(range(n_subs), min(n, n_subs))  # distinct recipients
        e = self.pop.enterprises[p["enterprise"]]
        routes = [
            r
            for r in e.routes[NTF] + e.routes[VER]
            if r.code == e.ntf_port and r.account == p["account"]
        ]
        for k, ti in enumerate(times):
            yield ti, self._spike_mt, (e.index, routes, subs[k % len(subs)])

    def _spike_mt(self, t: float, ei: int, routes: list[Route], sub: int) -> Record:
        e = self.pop.enterprises[ei]
        route = routes[int(self.rng.random() * len(routes))]
        self.out.counts["spike"] += 1
        if self.rng.random() < 0.7:
            return self.out.mt(t, sub, route, VER, self.texts.verification(e.name), ei, ())
        return self.out.mt(t, sub, route, NTF, self.texts.notification(e), ei, ())

    def _complaints(self, inc: Incident) -> Steps:
        p = inc.params
        rnd = self.rng.random
        times = sorted(inc.start + rnd() * (inc.end - inc.start) for _ in range(p["n"]))
        for ti in times:
            yield ti, self._wave_complaint, (p["enterprise"],)

    def _wave_complaint(self, t: float, ei: int) -> Record | None:
        """A complaint from someone who got `ei`'s marketing and has not complained yet."""
        lst, _ = self.audience.marketed[ei]
        used = self.complained.setdefault(ei, set())
        r = self.rng.random
        for _ in range(64):
            if not lst:
                break
            sub, port = lst[int(r() * len(lst))]
            if sub not in used:
                used.add(sub)
                self.out.counts["complaint_wave"] += 1
                e = self.pop.enterprises[ei]
                text = COMPLAINT_TEXTS[int(r() * 4)]  # one with a text
                return self.out.complaint(t, sub, port, e.name, text=text)
        self.out.counts["complaint_wave_skipped"] += 1
        return None
