"""What to simulate (`SimConfig`), the scenario names, and the seeded random streams."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from smsmon.tools.simulator.names import MAX_ENTERPRISES, PLATFORM_NAMES

SCENARIOS = ("normal", "double11", "bombing", "sublet", "complaints", "spike")
"""Scenario names accepted by `SimConfig.scenarios` and `--scenario`."""


def _today_midnight(tz: str) -> dt.datetime:
    now = dt.datetime.now(ZoneInfo(tz))
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class SimConfig:
    """What to simulate. Pass `start` explicitly for runs that must be reproducible."""

    seed: int = 1
    start: dt.datetime | None = None  # aware; None: today 00:00 in `timezone`
    duration: float = 86_400.0  # simulated seconds
    base_rate: float = 20.0  # mean events (mt+mo+dlr) per simulated second, daily average
    scenarios: frozenset[str] = frozenset({"normal"})
    violation_rate: float = 0.01  # fraction of background mt with a per-message violation
    enterprises: int = 30
    subscribers: int = 50_000
    consent_fraction: float = 0.6  # subscribers who consented to at least one enterprise
    revoked_fraction: float = 0.03  # of consent pairs, already revoked before the start
    # of granted consent pairs, given by default at registration or implied (默认): they do
    # not count as consent, and marketing on them is `consent.implicit`
    implicit_fraction: float = 0.1
    platforms: int = 3  # shared 10690 platform ports
    suspended_ports: int = 3
    timezone: str = "Asia/Shanghai"
    incidents: int = 1  # injected incidents per anomaly scenario
    warmup: float | None = None  # no incident before this offset; None: min(1 h, span/4)
    dlr_fraction: float = 0.3  # delivery reports per mt
    reply_prob: float = 0.008  # non-unsubscribe mo replies per mt
    unsubscribe_prob: float = 0.005  # unsubscribe replies per marketing mt
    complaint_prob: float = 1e-4  # background 12321 complaints per marketing mt
    msisdn_variant_prob: float = 0.02  # mt with the msisdn field written as +86…
    double11_peak: float = 8.0  # marketing multiplier at the Double 11 evening peak
    bombing_messages: int | None = None  # None: 60-200 per incident
    sublet_per_minute: float = 20.0
    complaint_wave: int = 40  # complaints per wave
    recent_capacity: int = 128  # mirror of SMSMON_RECENT_PORTS_PER_MSISDN (unsubscribe attribution)
    msisdn_secret: bytes | None = None  # for the ground truth's msisdn_hash
    msisdn_key_id: str = "k1"

    def __post_init__(self) -> None:
        self.scenarios = frozenset(self.scenarios)
        unknown = sorted(self.scenarios - set(SCENARIOS))
        if unknown:
            raise ValueError(
                f"unknown scenario(s) {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}"
            )
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if self.duration <= 0 or self.base_rate < 0:
            raise ValueError("duration must be > 0 and base_rate >= 0")
        if not 0.0 <= self.violation_rate <= 1.0:
            raise ValueError("violation_rate must be between 0 and 1")
        if not 2 <= self.enterprises <= MAX_ENTERPRISES:
            raise ValueError(f"enterprises must be between 2 and {MAX_ENTERPRISES}")
        if self.subscribers < 100:
            raise ValueError("subscribers must be at least 100")
        if not 0 <= self.platforms <= len(PLATFORM_NAMES):
            raise ValueError(f"platforms must be between 0 and {len(PLATFORM_NAMES)}")
        if self.incidents < 0:
            raise ValueError("incidents must be >= 0")
        if self.double11_peak < 1:
            raise ValueError("double11_peak must be >= 1")

    def resolved_start(self) -> dt.datetime:
        """`start`, or today 00:00 in the configured timezone."""
        return self.start if self.start is not None else _today_midnight(self.timezone)

    def rng(self, stream: str) -> random.Random:
        """The random stream `stream` of this seed: population, plan and traffic each draw
        from their own, so a change to one leaves the others' draws as they were."""
        # str seeds are hashed with SHA-512: deterministic whatever PYTHONHASHSEED is.
        return random.Random(f"smsmon-sim:{self.seed}:{stream}")
