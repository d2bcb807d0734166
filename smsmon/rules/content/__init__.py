"""Content checks for mt messages: opt-out, misdeclared marketing, quiet hours (pure logic)."""

from __future__ import annotations

from smsmon.rules.content.classifier import MarketingClassifier, ModelError, Verdict
from smsmon.rules.content.hours import AllowedHours, outside_allowed_hours
from smsmon.rules.content.optout import has_optout

__all__ = [
    "AllowedHours",
    "MarketingClassifier",
    "ModelError",
    "Verdict",
    "has_optout",
    "outside_allowed_hours",
]
