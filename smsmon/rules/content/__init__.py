"""Content checks for mt messages: opt-out, misdeclared marketing, quiet hours, sector (pure)."""

from __future__ import annotations

from smsmon.rules.content.classifier import MarketingClassifier, ModelError, Verdict
from smsmon.rules.content.hours import AllowedHours, outside_allowed_hours
from smsmon.rules.content.optout import has_optout
from smsmon.rules.content.sector import Sector, marketing_sector

__all__ = [
    "AllowedHours",
    "MarketingClassifier",
    "ModelError",
    "Sector",
    "Verdict",
    "has_optout",
    "marketing_sector",
    "outside_allowed_hours",
]
