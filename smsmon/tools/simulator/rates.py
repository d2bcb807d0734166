"""How much traffic: the daily profile per category, the Double 11 ramp, expected mt rates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Protocol
from zoneinfo import ZoneInfo

from smsmon.tools.simulator.config import SimConfig
from smsmon.tools.simulator.kinds import MKT

# Relative volume by local hour (linearly interpolated between the hour marks, then normalised
# to a daily mean of 1): quiet nights, a late-morning peak, and for marketing the evening peak
# 20:00-22:00.
_PROFILES: tuple[tuple[float, ...], ...] = (
    (0.15, 0.06, 0.03, 0.03, 0.03, 0.05, 0.15, 0.45, 0.9, 1.3, 1.6, 1.6, 1.2, 1.1, 1.2, 1.25,
     1.25, 1.2, 1.25, 1.55, 2.1, 2.2, 2.1, 0.7),
    (0.2, 0.1, 0.08, 0.08, 0.1, 0.2, 0.5, 1.0, 1.5, 1.6, 1.6, 1.5, 1.3, 1.4, 1.5, 1.5,
     1.5, 1.4, 1.3, 1.2, 1.2, 1.0, 0.7, 0.4),
    (0.3, 0.15, 0.1, 0.08, 0.08, 0.15, 0.4, 0.9, 1.3, 1.4, 1.4, 1.3, 1.3, 1.2, 1.2, 1.2,
     1.2, 1.2, 1.3, 1.5, 1.7, 1.7, 1.3, 0.7),
)  # fmt: skip


def _normalised(points: tuple[float, ...]) -> tuple[float, ...]:
    mean = sum(points) / len(points)
    return tuple(p / mean for p in points)


PROFILES = tuple(_normalised(p) for p in _PROFILES)


def profile(category: int, local_hour: float) -> float:
    """Relative volume of a category at a local hour of day (daily mean 1)."""
    pts = PROFILES[category]
    h = local_hour % 24.0
    i = int(h)
    frac = h - i
    return pts[i] * (1.0 - frac) + pts[(i + 1) % 24] * frac


class Sender(Protocol):
    """What the rates need of an enterprise: its share of all mt and its category mix."""

    weight: float
    mix: tuple[float, float, float]


class RateModel:
    """Expected mt rates: base rate split by category mix, daily profile and Double 11."""

    def __init__(self, senders: Iterable[Sender], cfg: SimConfig) -> None:
        senders = list(senders)
        self.cfg = cfg
        shares = [sum(e.weight * e.mix[c] for e in senders) for c in range(3)]
        # base_rate counts every event, so the mt rate leaves room for the dlr and mo an mt
        # brings along.
        per_mt = 1.0 + cfg.dlr_fraction + cfg.reply_prob + cfg.unsubscribe_prob * shares[MKT]
        self.mt_rate = cfg.base_rate / per_mt
        self.shares = shares

    def enterprise_rate(self, e: Sender, hour: float, boost: float) -> float:
        """Expected mt per second of enterprise `e` at a local hour with a marketing boost."""
        return (
            self.mt_rate
            * e.weight
            * sum(e.mix[c] * profile(c, hour) * (boost if c == MKT else 1.0) for c in range(3))
        )

    def category_rates(self, hour: float, boost: float) -> list[float]:
        """Expected mt per second of each category at a local hour with a marketing boost."""
        base = self.mt_rate
        sh = self.shares
        return [base * sh[c] * profile(c, hour) * (boost if c == MKT else 1.0) for c in range(3)]


class Double11:
    """Marketing multiplier: 1 before 19:00, linear to the peak at 20:00, peak until 22:00,
    back to 1 at 23:00 (local). Spans without any 19:00-23:00 evening ramp over the span's
    second half instead (1 at the midpoint, the peak from three quarters on)."""

    def __init__(self, cfg: SimConfig, start: dt.datetime, tz: ZoneInfo) -> None:
        self.peak = cfg.double11_peak
        self.duration = cfg.duration
        self.start = start
        self.tz = tz
        self.evening = self._has_evening(start, cfg.duration, tz)

    @staticmethod
    def _has_evening(start: dt.datetime, duration: float, tz: ZoneInfo) -> bool:
        step = 600.0
        t = 0.0
        while t <= duration:
            h = (start + dt.timedelta(seconds=t)).astimezone(tz).hour
            if 19 <= h < 23:
                return True
            t += step
        return False

    def factor(self, t: float, local_hour: float) -> float:
        """Multiplier for marketing at offset `t` (local hour `local_hour`)."""
        p = self.peak
        if self.evening:
            h = local_hour
            if h < 19 or h >= 23:
                return 1.0
            if h < 20:
                return 1.0 + (p - 1.0) * (h - 19)
            if h < 22:
                return p
            return p - (p - 1.0) * (h - 22)
        x = t / self.duration
        if x < 0.5:
            return 1.0
        return 1.0 + (p - 1.0) * min(1.0, (x - 0.5) / 0.25)


def double11(cfg: SimConfig, start: dt.datetime, tz: ZoneInfo) -> Double11 | None:
    """The Double 11 ramp if the scenario is on, else None (no boost)."""
    return Double11(cfg, start, tz) if "double11" in cfg.scenarios else None
