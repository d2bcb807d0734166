"""Pure-Python marketing-vs-non-marketing classifier for Chinese SMS (character n-grams)."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from smsmon.contract.canonical import folded

__all__ = [
    "FORMAT",
    "MODEL_RESOURCE",
    "URL_TOKEN",
    "MarketingClassifier",
    "ModelError",
    "Verdict",
    "char_ngrams",
    "mask_text",
    "segments",
]

FORMAT = "smsmon.content.marketing-classifier/2"
MODEL_RESOURCE = "model/marketing-v2.json"
# A URL is replaced by one private-use character so that it counts as a single
# character in the n-grams; it is rendered as "<url>" in documentation only.
URL_TOKEN = "\ue000"
_DIGIT_TOKEN = "0"
_MAX_CHARS = 2000
_TOP_K = 5

_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
# Scheme URLs, www. hosts and bare short-link hosts (t.cn/x, dwz.cn/x, m.example.com).
_URL = re.compile(
    r"(?:https?://|www\.)[!-~]+"
    r"|(?<![a-z0-9@.])(?:[a-z0-9-]+\.)+(?:cn|com|net|org|top|vip|xyz|cc|me|io|co|ly|gl)"
    r"(?![a-z])(?:/[!-~]*)?",
)
_DIGITS = re.compile(r"\d+")
# Clause ends after NFKC (full-width ！？；，：become ASCII; 。stays).
_CLAUSE_END = re.compile(r"[。!?;,:]")
_SPACE = re.compile(r"\s+")


class ModelError(ValueError):
    """The model artefact is missing, malformed or of an unknown format."""


def mask_text(text: str) -> str:
    """Normalise `text` for the classifier: NFKC, case-fold, mask URLs and digits.

    Every URL becomes one URL_TOKEN character, every run of digits becomes "0",
    and whitespace is removed (so 限 时 抢 购 reads 限时抢购).  Only the first
    2000 characters are considered.
    """
    s = folded(text[:_MAX_CHARS])
    s = _PRIVATE_USE.sub("", s)
    s = _URL.sub(URL_TOKEN, s)
    s = _DIGITS.sub(_DIGIT_TOKEN, s)
    return _SPACE.sub("", s)


def char_ngrams(masked: str, lo: int, hi: int) -> set[str]:
    """Return the set of character n-grams of `masked` with lo <= n <= hi."""
    grams: set[str] = set()
    size = len(masked)
    for n in range(lo, hi + 1):
        for i in range(size - n + 1):
            grams.add(masked[i : i + n])
    return grams


def _segment_spans(masked: str, max_clauses: int, min_chars: int) -> list[tuple[int, int]]:
    """(start, end) of each part of `masked` scored besides the whole text (see `segments`)."""
    cuts = [0, *(m.end() for m in _CLAUSE_END.finditer(masked))]
    if cuts[-1] != len(masked):
        cuts.append(len(masked))
    out: list[tuple[int, int]] = []
    seen = {masked}
    last = len(cuts) - 1
    for i in range(last):
        for j in range(i + 1, min(last, i + max_clauses) + 1):
            a, b = cuts[i], cuts[j]
            if b - a >= min_chars:
                part = masked[a:b]
                if part not in seen:
                    seen.add(part)
                    out.append((a, b))
    return out


def segments(masked: str, max_clauses: int, min_chars: int) -> list[str]:
    """The parts of a masked text that are scored besides the whole: every run of 1 to
    `max_clauses` consecutive clauses (ending at 。 ! ? ; , :) of at least `min_chars`
    characters, without duplicates and without the whole text itself.

    A hybrid (a code or a notice plus a promotion) is marketing because one of its parts
    is; the parts are often joined by a comma only, so clauses, not sentences, are the unit.
    """
    return [masked[a:b] for a, b in _segment_spans(masked, max_clauses, min_chars)]


def _reportable(gram: str) -> bool:
    """Show a feature only if it is all letters (CJK or Latin): no digit, mask or punctuation."""
    return gram.isalpha()


@dataclass(frozen=True)
class Verdict:
    """The classifier's answer for one text.

    `score` is the sigmoid probability of marketing (the highest over the whole text and
    each of its parts, see `segments`); `top_features` are at most five
    vocabulary n-grams present in the text that pushed hardest towards marketing
    (never a digit, a masked token or any other part of the raw message).
    """

    score: float
    is_marketing: bool
    top_features: tuple[str, ...]


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class MarketingClassifier:
    """A logistic-regression model over binary character n-grams, evaluated in pure Python."""

    def __init__(
        self,
        weights: Mapping[str, float],
        bias: float,
        threshold: float,
        ngram_range: tuple[int, int],
        version: str,
        metadata: Mapping[str, Any] | None = None,
        max_clauses: int = 3,
        min_chars: int = 4,
    ) -> None:
        """Build a classifier from explicit parameters (normally use `load`)."""
        lo, hi = ngram_range
        if not 1 <= lo <= hi:
            raise ModelError(f"bad ngram_range {ngram_range!r}")
        if max_clauses < 0 or min_chars < 1:
            raise ModelError(f"bad segments max_clauses={max_clauses!r} min_chars={min_chars!r}")
        if not 0.0 < threshold < 1.0:
            raise ModelError(f"threshold must be in (0, 1), got {threshold!r}")
        self._weights: dict[str, float] = dict(weights)
        self._bias = float(bias)
        self.threshold = float(threshold)
        self.ngram_range = (lo, hi)
        self.version = version
        self.max_clauses = max_clauses
        self.min_chars = min_chars
        self.metadata: Mapping[str, Any] = dict(metadata or {})

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> MarketingClassifier:
        """Build a classifier from the parsed JSON artefact, validating its shape."""
        if doc.get("format") != FORMAT:
            raise ModelError(f"unknown model format {doc.get('format')!r}, want {FORMAT!r}")
        try:
            lo, hi = (int(x) for x in doc["ngram_range"])
            weights = {str(k): float(v) for k, v in doc["weights"].items()}
            seg = doc["segments"]
            return cls(
                weights=weights,
                bias=float(doc["bias"]),
                threshold=float(doc["threshold"]),
                ngram_range=(lo, hi),
                version=str(doc["version"]),
                metadata=doc.get("metadata", {}),
                max_clauses=int(seg["max_clauses"]),
                min_chars=int(seg["min_chars"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"malformed model artefact: {exc}") from exc

    @classmethod
    def load(cls, path: Path | None = None) -> MarketingClassifier:
        """Load the model JSON at `path`, or the shipped package-data model if None.

        Reads a local file only (no network).  The shipped model is parsed once per
        process and the same instance is returned on later calls.
        """
        if path is None:
            return _load_shipped()
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read model {path}: {exc}") from exc
        return cls.from_dict(doc)

    @property
    def vocabulary_size(self) -> int:
        """Number of n-grams with a weight in the model."""
        return len(self._weights)

    def _z(self, masked: str) -> float:
        lo, hi = self.ngram_range
        w = self._weights
        return self._bias + sum(w.get(g, 0.0) for g in char_ngrams(masked, lo, hi))

    def segments(self, masked: str) -> list[str]:
        """The parts of `masked` this model scores besides the whole text."""
        return segments(masked, self.max_clauses, self.min_chars)

    def _logits(self, masked: str) -> tuple[float, float, list[tuple[float, str]]]:
        """(whole-text logit, highest logit of the text and its parts, positive n-grams).

        Each logit is the bias plus the weights of the distinct vocabulary n-grams inside
        the span, exactly as `_z` of the span's text; the n-grams of the whole text are
        looked up once and reused for every part.
        """
        lo, hi = self.ngram_range
        w = self._weights
        size = len(masked)
        # by_start[i]: (end, gram, weight) of the vocabulary n-grams starting at i.
        by_start: list[list[tuple[int, str, float]]] = [[] for _ in range(size)]
        whole = self._bias
        seen: set[str] = set()
        positive: list[tuple[float, str]] = []
        for i in range(size):
            row = by_start[i]
            for n in range(lo, min(hi, size - i) + 1):
                gram = masked[i : i + n]
                weight = w.get(gram)
                if weight is None:
                    continue
                row.append((i + n, gram, weight))
                if gram not in seen:
                    seen.add(gram)
                    whole += weight
                    if weight > 0.0:
                        positive.append((weight, gram))
        best = whole
        for a, b in _segment_spans(masked, self.max_clauses, self.min_chars):
            z = self._bias
            in_part: set[str] = set()
            for i in range(a, b):
                for end, gram, weight in by_start[i]:
                    if end <= b and gram not in in_part:
                        in_part.add(gram)
                        z += weight
            if z > best:
                best = z
        return whole, best, positive

    def score_masked(self, masked: str) -> float:
        """Probability of marketing for an already-masked text (see `mask_text`).

        The logit is the maximum over the whole text and each of its parts (`segments`), so
        a promotion appended to a verification code or a notice is not diluted by the rest.
        The trainer fits the model the same way (every part of a non-marketing text is a
        negative example), so a part of a notice does not score as marketing by itself.
        """
        return _sigmoid(self._logits(masked)[1])

    def classify(self, text: str) -> Verdict:
        """Classify one SMS text as marketing or not, with the n-grams that drove it."""
        _, best, positive = self._logits(mask_text(text))
        score = _sigmoid(best)
        positive.sort(key=lambda item: (-item[0], item[1]))
        top = tuple(g for _, g in positive if _reportable(g))[:_TOP_K]
        return Verdict(score=score, is_marketing=score >= self.threshold, top_features=top)

    def classify_many(self, texts: Iterable[str]) -> list[Verdict]:
        """Classify several texts (a convenience loop over `classify`)."""
        return [self.classify(t) for t in texts]


@functools.cache
def _load_shipped() -> MarketingClassifier:
    package = __package__ or __name__.rpartition(".")[0]
    resource = resources.files(package).joinpath(MODEL_RESOURCE)
    try:
        doc = json.loads(resource.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read shipped model {MODEL_RESOURCE}: {exc}") from exc
    return MarketingClassifier.from_dict(doc)
