"""Unit tests for part scoring: a promotion inside a code or a notice makes the text marketing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smsmon.rules.content import classifier as clf_mod
from smsmon.rules.content.classifier import MarketingClassifier, ModelError, mask_text, segments

pytestmark = pytest.mark.unit

MODEL = Path(clf_mod.__file__).resolve().parent / "model" / "marketing-v2.json"


@pytest.fixture(scope="module")
def clf() -> MarketingClassifier:
    return MarketingClassifier.load()


def test_segments_are_runs_of_clauses_without_the_whole_text() -> None:
    masked = "aaaa,bbbb。cccc"
    assert segments(masked, 1, 1) == ["aaaa,", "bbbb。", "cccc"]
    assert segments(masked, 2, 1) == ["aaaa,", "aaaa,bbbb。", "bbbb。", "bbbb。cccc", "cccc"]
    assert masked not in segments(masked, 3, 1)


def test_segments_skip_short_parts_and_duplicates() -> None:
    assert segments("ab,cdefg,ab,", 1, 4) == ["cdefg,"]
    assert segments("xyz,xyz,", 1, 1) == ["xyz,"]
    assert segments("", 3, 1) == []
    assert segments("nosplit", 3, 1) == []


def test_segments_split_full_width_punctuation_after_masking() -> None:
    parts = segments(mask_text("验证码 1234，请勿泄露；额度已提升，点击领取"), 1, 2)
    assert parts == ["验证码0,", "请勿泄露;", "额度已提升,", "点击领取"]


# Invented senders and texts written for these tests (not from the corpus or training/eval).
CODE = "【金禾贷】验证码 401928，5分钟内有效，请勿泄露"
NOTICE = "【橙意商城】您的订单 5512093311 已发货，预计明天送达"
LOAN = "您有3万元借款额度待领取，最快3分钟到账"
SHOP = "店庆全场满199减40，爆款限时秒杀"


def test_codes_and_notices_alone_are_not_marketing(clf: MarketingClassifier) -> None:
    assert not clf.classify(CODE + "。").is_marketing
    assert not clf.classify(NOTICE + "。").is_marketing


@pytest.mark.parametrize("join", ["。", "，", "；", "! "])
def test_a_code_with_a_loan_offer_is_marketing(clf: MarketingClassifier, join: str) -> None:
    """A hybrid is marketing, also when the promotion is joined by a comma only."""
    assert clf.classify(CODE + join + LOAN).is_marketing


@pytest.mark.parametrize("join", ["。", "，"])
def test_a_notice_with_a_promotion_is_marketing(clf: MarketingClassifier, join: str) -> None:
    assert clf.classify(NOTICE + join + SHOP).is_marketing


def test_model_segment_settings_round_trip(clf: MarketingClassifier) -> None:
    doc = json.loads(MODEL.read_text(encoding="utf-8"))
    assert doc["segments"] == {"max_clauses": clf.max_clauses, "min_chars": clf.min_chars}
    assert clf.segments("ab,cdef") == segments("ab,cdef", clf.max_clauses, clf.min_chars)


def test_artefact_without_segment_settings_is_malformed(tmp_path: Path) -> None:
    doc = json.loads(MODEL.read_text(encoding="utf-8"))
    del doc["segments"]
    broken = tmp_path / "no-segments.json"
    broken.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ModelError, match="malformed"):
        MarketingClassifier.load(broken)


def test_a_first_format_artefact_is_refused_by_name(tmp_path: Path) -> None:
    doc = json.loads(MODEL.read_text(encoding="utf-8"))
    doc["format"] = "smsmon.content.marketing-classifier/1"
    old = tmp_path / "v1.json"
    old.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ModelError, match="marketing-classifier/2"):
        MarketingClassifier.load(old)
