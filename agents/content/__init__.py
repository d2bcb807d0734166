"""Content checks for mt messages: opt-out, misdeclared marketing, quiet hours (pure logic)."""

from __future__ import annotations

from .classifier import MarketingClassifier, ModelError, Verdict
from .hours import AllowedHours, outside_allowed_hours
from .optout import has_optout

__all__ = [
    "AllowedHours",
    "MarketingClassifier",
    "ModelError",
    "Verdict",
    "has_optout",
    "outside_allowed_hours",
]
