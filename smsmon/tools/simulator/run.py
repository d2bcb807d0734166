"""One run of a simulation: the background arrivals merged with the scheduled records."""

from __future__ import annotations

import datetime as dt
import heapq
import math
from collections import Counter
from collections.abc import Iterator
from typing import Protocol
from zoneinfo import ZoneInfo

from smsmon.tools.simulator.audience import Audience
from smsmon.tools.simulator.background import Background
from smsmon.tools.simulator.clock import Clock
from smsmon.tools.simulator.config import SimConfig
from smsmon.tools.simulator.incidents import Incident, Injector
from smsmon.tools.simulator.kinds import Record
from smsmon.tools.simulator.population import Population
from smsmon.tools.simulator.records import Emitter
from smsmon.tools.simulator.schedule import Schedule, Steps
from smsmon.tools.simulator.texts import Texts
from smsmon.tools.simulator.violations import Violations

_TICK = 10.0  # rates are re-evaluated every 10 simulated seconds


class Planned(Protocol):
    """What a run needs of its simulation (`Simulation` has it)."""

    @property
    def config(self) -> SimConfig: ...
    @property
    def start(self) -> dt.datetime: ...
    @property
    def tz(self) -> ZoneInfo: ...
    @property
    def population(self) -> Population: ...
    @property
    def incidents(self) -> list[Incident]: ...


class SimRun:
    """One pass over the simulated span: a heap of scheduled records merged with background
    arrivals (a Poisson process whose rate is piecewise constant per tick).

    Iterate `records`; `t` is the offset of the latest record, and `expected` (the injected
    violations' (event_id, rule) pairs) and `counts` fill as it goes. Every part draws from
    the one `traffic` stream in record order, so a run is a function of the seed.
    """

    def __init__(self, sim: Planned) -> None:
        cfg = sim.config
        pop = sim.population
        self.sim = sim
        self.cfg = cfg
        self.rng = cfg.rng("traffic")
        self.t = 0.0
        self.schedule = Schedule(cfg.duration)
        texts = Texts(self.rng)
        waves = [i.params["enterprise"] for i in sim.incidents if i.scenario == "complaints"]
        audience = Audience(pop, cfg, self.rng, watched=waves)
        prefix = f"s{cfg.seed}-{int(sim.start.timestamp()):x}-"
        clock = Clock(sim.start, sim.tz)
        out = Emitter(cfg, pop, self.rng, clock, prefix, self.schedule, audience)
        self.expected: list[tuple[str, str]] = out.expected
        self.counts: Counter[str] = out.counts
        violations = Violations(pop, self.rng, out, texts, audience)
        self.background = Background(
            cfg, pop, sim.start, sim.tz, self.rng, out, texts, audience, violations
        )
        injector = Injector(cfg, pop, self.rng, out, texts, audience)
        self._incident_steps: list[Steps] = [injector.steps(inc) for inc in sim.incidents]
        self.records: Iterator[Record] = self._iterate()

    def _iterate(self) -> Iterator[Record]:
        for steps in self._incident_steps:
            self.schedule.follow(steps)
        rnd = self.rng.random
        log_ = math.log
        # The heap is popped here rather than through a method: this loop runs once per record.
        heap = self.schedule.heap
        heappop = heapq.heappop
        end = self.cfg.duration
        background = self.background.mt
        rates = self.background.rates
        t = 0.0
        lam, cum = rates(0.0)
        tick_end = min(_TICK, end)
        while True:
            tn = t - log_(1.0 - rnd()) / lam if lam > 0 else math.inf
            is_bg = tn < tick_end
            if not is_bg:
                tn = tick_end
            while heap and heap[0][0] <= tn:
                ht, _, fn, args = heappop(heap)
                self.t = ht
                rec = fn(ht, *args)
                if rec is not None:
                    yield rec
            if is_bg:
                t = tn
                self.t = t
                yield background(t, lam, cum)
            else:
                t = tick_end
                if t >= end:
                    break
                tick_end = min(t + _TICK, end)
                lam, cum = rates(t)
