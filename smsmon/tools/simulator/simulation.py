"""A deterministic simulation (`generate`): population, reference data, incident plan and
ground truth, from which any number of identical runs stream."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from smsmon.tools.scenario import Reference
from smsmon.tools.simulator.clock import iso
from smsmon.tools.simulator.config import SimConfig
from smsmon.tools.simulator.incidents import Incident, plan, truth_rows
from smsmon.tools.simulator.kinds import Record
from smsmon.tools.simulator.population import Population, build_population
from smsmon.tools.simulator.run import SimRun


@dataclass
class Simulation:
    """A deterministic simulation: reference data, the incident plan and its ground truth.

    `records()` starts a fresh run and streams its records in ts order; each run is identical.
    """

    config: SimConfig
    start: dt.datetime
    tz: ZoneInfo
    population: Population
    incidents: list[Incident]
    reference: Reference
    truth: list[dict[str, Any]]

    @property
    def end(self) -> dt.datetime:
        """End of the simulated span (exclusive)."""
        return self.start + dt.timedelta(seconds=self.config.duration)

    def run(self) -> SimRun:
        """A fresh run: iterate `.records`; `.expected` and `.counts` fill as it goes."""
        return SimRun(self)

    def records(self) -> Iterator[Record]:
        """Records of a fresh run, in ts order: (`event`|`complaint`, key msisdn, value)."""
        return self.run().records

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def truth_until(self, offset: float | None) -> list[dict[str, Any]]:
        """Ground truth of the incidents begun by `offset` seconds (None: all), ends clipped."""
        if offset is None:
            return list(self.truth)
        out: list[dict[str, Any]] = []
        for inc, rows in zip(self.incidents, self._rows_by_incident(), strict=True):
            if inc.start > offset:
                continue
            for row in rows:
                if inc.end > offset:
                    row = dict(row, end=iso(self.start, self.tz, offset), truncated=True)
                out.append(row)
        return out

    def _rows_by_incident(self) -> list[list[dict[str, Any]]]:
        rows: list[list[dict[str, Any]]] = []
        i = 0
        for inc in self.incidents:
            rows.append(self.truth[i : i + len(inc.subjects)])
            i += len(inc.subjects)
        return rows


def generate(config: SimConfig) -> Simulation:
    """Build the population, reference data and incident plan for `config` (deterministic).

    Traffic is produced lazily by `Simulation.records()`, so large runs stream in constant
    memory (apart from per-subscriber state bounded by the population).
    """
    tz = ZoneInfo(config.timezone)
    start = config.resolved_start()
    pop = build_population(config, start)
    incidents = plan(pop, config, start, tz)
    ref = Reference(
        ports=[(code, rec) for code, rec in pop.ports.items()],
        signatures=[(sig, rec) for sig, rec in pop.signatures.items()],
        consent=list(pop.consent_records),
    )
    return Simulation(
        config=config,
        start=start,
        tz=tz,
        population=pop,
        incidents=incidents,
        reference=ref,
        truth=truth_rows(start, tz, incidents, config),
    )
