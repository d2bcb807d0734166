"""The content rules of an mt event: opt-out present, declared category honest, allowed hours."""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import TYPE_CHECKING

from smsmon.contract.models import Category, MtEvent
from smsmon.rules import catalog as R
from smsmon.rules.compliance import Finding
from smsmon.rules.content.classifier import MarketingClassifier, Verdict, mask_text
from smsmon.rules.content.hours import AllowedHours, outside_allowed_hours
from smsmon.rules.content.optout import has_optout
from smsmon.rules.content.sector import Sector, marketing_sector

if TYPE_CHECKING:
    from smsmon.config.settings import Settings


_NONZERO_DIGITS = re.compile("[1-9]")


def digit_shape(text: str) -> str:
    """`text` with every ASCII digit 1-9 as 0; `mask_text` gives it the same masked form."""
    return _NONZERO_DIGITS.sub("0", text)


class ContentChecker:
    """Applies content.optout_missing, content.misdeclared and time.quiet_hours.

    The classifier runs only for messages declared notification or verification; its verdict
    depends on the masked text alone (digits and links masked), so verdicts are cached by
    masked text: templated traffic (codes, delivery notices) is classified once per template.
    The opt-out check of a marketing text is cached by the text itself (a campaign sends the
    same text to many subscribers).
    """

    def __init__(
        self,
        classifier: MarketingClassifier,
        hours: AllowedHours,
        cache_size: int = 50_000,
    ) -> None:
        self.classifier = classifier
        self.hours = hours
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Verdict] = OrderedDict()
        self._optout: OrderedDict[str, bool] = OrderedDict()
        self._by_text: OrderedDict[str, Verdict] = OrderedDict()
        self._by_shape: OrderedDict[str, Verdict] = OrderedDict()
        self._sector: OrderedDict[str, Sector] = OrderedDict()

    def sector(self, text: str) -> Sector:
        """`marketing_sector(text)`, cached by text (a campaign sends one text to many)."""
        found = self._sector.get(text)
        if found is None:
            found = self._sector[text] = marketing_sector(text)
            if len(self._sector) > self.cache_size:
                self._sector.popitem(last=False)
        return found

    def verdict(self, text: str) -> Verdict:
        """Classifier verdict for `text`, cached by its masked form (and by the text itself,
        which saves masking a text seen before: the verdict is a function of the text)."""
        v = self._by_text.get(text)
        if v is not None:
            return v
        # Every ASCII digit as 0: the masked form is the same (masking turns each digit run
        # into one 0), and this costs a third of masking; a verification code or an order
        # number then finds its template's verdict without being masked.
        shape = digit_shape(text)
        v = self._by_shape.get(shape)
        if v is None:
            key = mask_text(text)
            v = self._cache.get(key)
            if v is None:
                v = self.classifier.classify(text)
                self._cache[key] = v
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            by_shape = self._by_shape
            by_shape[shape] = v
            if len(by_shape) > self.cache_size:
                by_shape.popitem(last=False)
        by_text = self._by_text
        by_text[text] = v
        if len(by_text) > self.cache_size:
            by_text.popitem(last=False)
        return v

    def optout(self, text: str) -> bool:
        """`has_optout(text)`, cached by text (the oldest entry goes first when full)."""
        found = self._optout.get(text)
        if found is None:
            found = has_optout(text)
            cache = self._optout
            cache[text] = found
            if len(cache) > self.cache_size:
                cache.popitem(last=False)
        return found

    def check(self, event: MtEvent) -> list[Finding]:
        """Content findings for one mt event (never quoting the text or its digits)."""
        out: list[Finding] = []
        if event.category is Category.MARKETING:
            why = "declared marketing"
        else:
            v = self.verdict(event.text)
            if not v.is_marketing:
                return out
            feats = ", ".join(v.top_features) or "none reportable"
            why = f"classifier score {v.score:.3f} (features: {feats})"
            out.append(
                Finding(
                    R.CONTENT_MISDECLARED,
                    f"declared {event.category.value} but the text is marketing: {why}; "
                    f"threshold {self.classifier.threshold:g}",
                )
            )
        if not self.optout(event.text):
            out.append(
                Finding(
                    R.CONTENT_OPTOUT_MISSING,
                    f"marketing ({why}) without an opt-out instruction such as 回T退订",
                )
            )
        if self.hours.enabled and outside_allowed_hours(event.ts, self.hours):
            how = "declared" if event.category is Category.MARKETING else "judged"
            out.append(
                Finding(
                    R.TIME_QUIET_HOURS,
                    f"marketing ({how}) sent outside "
                    f"{self.hours.start:%H:%M}-{self.hours.end:%H:%M} {self.hours.tz}",
                )
            )
        return out


def content_checker(settings: Settings) -> ContentChecker | None:
    """The content rules configured by settings (None when turned off): the one builder used
    by the worker (`agents.pipeline` re-exports it) and the offline audit, which gets it
    without importing the Faust application."""
    if not settings.content_rules_enabled:
        return None
    hours = AllowedHours(
        start=settings.allowed_hours_start,
        end=settings.allowed_hours_end,
        tz=settings.allowed_hours_tz or settings.timezone,
        enabled=settings.quiet_hours_enabled,
    )
    return ContentChecker(MarketingClassifier.load(), hours)
