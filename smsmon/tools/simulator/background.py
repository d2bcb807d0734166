"""Ordinary traffic: who sends what to whom, at the rate of the hour."""

from __future__ import annotations

import bisect
import datetime as dt
import random
from zoneinfo import ZoneInfo

from smsmon.tools.simulator.audience import Audience
from smsmon.tools.simulator.clock import local_hour
from smsmon.tools.simulator.config import SimConfig
from smsmon.tools.simulator.kinds import MKT, NTF, VER, Record
from smsmon.tools.simulator.population import Population
from smsmon.tools.simulator.rates import RateModel, double11
from smsmon.tools.simulator.records import Emitter
from smsmon.tools.simulator.texts import Texts
from smsmon.tools.simulator.violations import Violations


class Background:
    """Background mt: a category by its current rate, an enterprise by its share of that
    category, a subscriber (for marketing one with consent), one of the enterprise's routes;
    a sprinkle of them violates a rule on purpose."""

    def __init__(
        self,
        cfg: SimConfig,
        pop: Population,
        start: dt.datetime,
        tz: ZoneInfo,
        rng: random.Random,
        out: Emitter,
        texts: Texts,
        audience: Audience,
        violations: Violations,
    ) -> None:
        self.cfg, self.pop, self.start, self.tz, self.rng = cfg, pop, start, tz, rng
        self.out, self.texts, self.audience, self.violations = out, texts, audience, violations
        self.model = RateModel(pop.enterprises, cfg)
        self.d11 = double11(cfg, start, tz)
        self.n_ent = len(pop.enterprises)
        # Enterprise choice per category: cumulative weights.
        self.ent_cum: list[list[float]] = []
        for c in range(3):
            acc, cum = 0.0, []
            for e in pop.enterprises:
                acc += e.weight * e.mix[c]
                cum.append(acc)
            self.ent_cum.append(cum)

    def rates(self, t: float) -> tuple[float, list[float]]:
        """Total mt rate at offset `t` and the cumulative rates of marketing and
        notification (for picking a category); sets the texts' Double 11 boost."""
        hour = local_hour(self.start + dt.timedelta(seconds=t), self.tz)
        boost = self.d11.factor(t, hour) if self.d11 else 1.0
        self.texts.boost = boost
        lam = self.model.category_rates(hour, boost)
        return lam[0] + lam[1] + lam[2], [lam[0], lam[0] + lam[1]]

    def mt(self, t: float, lam: float, cum: list[float]) -> Record:
        """The background mt arriving at offset `t` (rates as `rates` returned them)."""
        r = self.rng.random
        x = r() * lam
        c = MKT if x < cum[0] else (NTF if x < cum[1] else VER)
        ecum = self.ent_cum[c]
        ei = min(bisect.bisect_right(ecum, r() * ecum[-1]), self.n_ent - 1)
        e = self.pop.enterprises[ei]
        if r() < self.cfg.violation_rate:
            return self.violations.mt(t, e)
        sub: int | None
        if c == MKT:
            sub = self.audience.consenter(ei)
            if sub is None:  # nobody left to market to: a notification instead
                c = NTF
        if c != MKT:
            sub = int(r() * len(self.pop.msisdns))
        assert sub is not None
        routes = e.routes[c]
        route = routes[int(r() * len(routes))]
        sig = None
        if r() < 0.1:  # some gateways also carry the signature in its own field
            sig = e.name if r() < 0.5 else f"【{e.name}】"
        text = self.texts.of(e, c)
        return self.out.mt(t, sub, route, c, text, ei, (), signature=sig, sig_name=e.name)
