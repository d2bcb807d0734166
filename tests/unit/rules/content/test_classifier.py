"""Unit tests for the marketing classifier: shipped model, held-out floor, feature hygiene."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsmon.rules.content import classifier as clf_mod
from smsmon.rules.content.checks import ContentChecker, digit_shape
from smsmon.rules.content.classifier import (
    URL_TOKEN,
    MarketingClassifier,
    ModelError,
    Verdict,
    char_ngrams,
    mask_text,
)

pytestmark = pytest.mark.unit

PACKAGE = Path(clf_mod.__file__).resolve().parent
CORPUS_DIR = Path(__file__).resolve().parents[4] / "training" / "corpus"
HELDOUT = CORPUS_DIR / "heldout.jsonl"
MODEL = PACKAGE / "model" / "marketing-v2.json"

PRECISION_FLOOR = 0.95
RECALL_FLOOR = 0.90


@pytest.fixture(scope="module")
def clf() -> MarketingClassifier:
    return MarketingClassifier.load()


@pytest.fixture(scope="module")
def heldout() -> list[dict[str, str]]:
    with HELDOUT.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _precision_recall(clf: MarketingClassifier, rows: list[dict[str, str]]) -> tuple[float, float]:
    tp = fp = fn = 0
    for r in rows:
        pred = clf.classify(r["text"]).is_marketing
        gold = r["label"] == "marketing"
        tp += pred and gold
        fp += pred and not gold
        fn += gold and not pred
    return tp / (tp + fp), tp / (tp + fn)


def test_shipped_model_metadata(clf: MarketingClassifier) -> None:
    assert clf.version == "marketing-v2"
    assert clf.ngram_range == (1, 3)
    assert 0.0 < clf.threshold < 1.0
    meta: dict[str, Any] = dict(clf.metadata)
    for key in ("trained_on", "corpus", "split", "heldout", "seed"):
        assert key in meta
    assert len(meta["corpus"]["sha256"]) == 64
    assert meta["heldout"]["overall"]["precision"] >= PRECISION_FLOOR


def test_heldout_families_disjoint_from_training(
    clf: MarketingClassifier, heldout: list[dict[str, str]]
) -> None:
    split = clf.metadata["split"]
    test_fams = set(split["test_families"])
    assert {r["family"] for r in heldout} <= test_fams
    assert not test_fams & set(split["train_families"])
    assert {r["label"] for r in heldout} == {"marketing", "notification", "verification"}


def test_heldout_precision_recall_floor(
    clf: MarketingClassifier, heldout: list[dict[str, str]]
) -> None:
    precision, recall = _precision_recall(clf, heldout)
    assert precision >= PRECISION_FLOOR, precision
    assert recall >= RECALL_FLOOR, recall


def test_heldout_misdeclared_subset_floor(
    clf: MarketingClassifier, heldout: list[dict[str, str]]
) -> None:
    """Rows declared notification/verification: the content.misdeclared decision."""
    subset = [r for r in heldout if r["declared"] in ("notification", "verification")]
    assert any(r["label"] == "marketing" for r in subset)
    precision, recall = _precision_recall(clf, subset)
    assert precision >= PRECISION_FLOOR, precision
    assert recall >= RECALL_FLOOR, recall


def test_top_features_never_contain_digits_or_masks(
    clf: MarketingClassifier, heldout: list[dict[str, str]]
) -> None:
    texts = [r["text"] for r in heldout] + [
        "【优品汇】限时抢购！13800138000专享，满299减50，验证码123456，戳 https://t.cn/A6x9",
        "０１２３４５６７８９ 全场5折 ①②③ 限时",
    ]
    for text in texts:
        verdict = clf.classify(text)
        assert len(verdict.top_features) <= 5
        for gram in verdict.top_features:
            assert not any(ch.isdigit() for ch in gram), (gram, text)
            assert URL_TOKEN not in gram and "0" not in gram
            assert gram.isalpha()
            assert 1 <= len(gram) <= 3


def test_top_features_are_vocabulary_terms_not_the_message(clf: MarketingClassifier) -> None:
    text = "【喜购商城】验证码482913，5分钟内有效。新人专享首单立减20元，戳 t.cn/xyzAB12"
    verdict = clf.classify(text)
    assert verdict.is_marketing
    assert verdict.top_features
    vocab = json.loads(MODEL.read_text(encoding="utf-8"))["weights"]
    for gram in verdict.top_features:
        assert vocab[gram] > 0
        assert gram != text


def test_verdict_shapes(clf: MarketingClassifier) -> None:
    promo = clf.classify(
        "【惠买网】双11大促今晚8点开抢！全场满299减50，爆款直降，戳 t.cn/abc123 回T退订"
    )
    assert isinstance(promo, Verdict)
    assert promo.is_marketing and promo.score > clf.threshold
    bank = clf.classify("【华信银行】您尾号1234的储蓄卡06月18日消费人民币58.00元，余额1234.00元。")
    assert not bank.is_marketing and 0.0 <= bank.score < clf.threshold
    code = clf.classify("【华信银行】验证码123456，5分钟内有效，请勿泄露给他人。")
    assert not code.is_marketing
    assert clf.classify("").score == pytest.approx(clf.classify("   ").score)


def test_masking() -> None:
    assert mask_text("验证码 123456，访问 https://a.example.com/x?y=1 或 t.cn/Ab3") == (
        f"验证码0,访问{URL_TOKEN}或{URL_TOKEN}"
    )
    assert mask_text("ＴＤ 全场５折") == "td全场0折"
    assert mask_text("金额12.50元") == "金额0.0元"
    assert mask_text("邮箱 a1@mail.com") == "邮箱a0@mail.com"
    assert char_ngrams("abc", 1, 2) == {"a", "b", "c", "ab", "bc"}


def test_loading_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    clf_mod._load_shipped.cache_clear()
    fresh = MarketingClassifier.load()
    assert fresh.classify("【惠买网】全场5折限时抢购 t.cn/abc").is_marketing
    explicit = MarketingClassifier.load(MODEL)
    assert explicit.vocabulary_size == fresh.vocabulary_size


def test_shipped_model_is_cached() -> None:
    assert MarketingClassifier.load() is MarketingClassifier.load()


def test_bad_artefacts_rejected(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ModelError):
        MarketingClassifier.load(missing)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "something-else"}), encoding="utf-8")
    with pytest.raises(ModelError, match="format"):
        MarketingClassifier.load(wrong)
    doc = json.loads(MODEL.read_text(encoding="utf-8"))
    del doc["weights"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ModelError, match="malformed"):
        MarketingClassifier.load(broken)


def _corpus_texts() -> list[str]:
    texts = []
    for name in ("sms_corpus.jsonl", "heldout.jsonl"):
        with (CORPUS_DIR / name).open(encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for line in fh if line.strip()]
    return texts


@given(
    st.text(
        alphabet=st.sampled_from(
            [*"0123456789１２３٣①½abcxyz.-/:@ \u3000\t\n【】验证码退订TDhttpswwcn", URL_TOKEN]
        ),
        max_size=80,
    )
)
def test_the_digit_shape_has_the_same_masked_form(text: str) -> None:
    """The checker caches verdicts by `digit_shape`: it must never change the masked form."""
    assert mask_text(digit_shape(text)) == mask_text(text)


def test_the_digit_shape_keeps_the_masked_form_of_the_corpus() -> None:
    texts = _corpus_texts()
    assert len(texts) > 1000
    for text in texts:
        assert mask_text(digit_shape(text)) == mask_text(text)
        assert mask_text(digit_shape(text + " 尾号1234 t.cn/a9Z http://x.cn/7?a=9")) == mask_text(
            text + " 尾号1234 t.cn/a9Z http://x.cn/7?a=9"
        )


def test_checker_verdicts_equal_the_classifier_by_text_and_by_shape(
    clf: MarketingClassifier,
) -> None:
    from smsmon.rules.content.hours import AllowedHours

    checker = ContentChecker(clf, AllowedHours(), cache_size=64)
    texts = _corpus_texts()[:400]
    variants = [t.replace("5", "7").replace("0", "3") for t in texts]
    for text in texts + variants + texts:  # misses, shape hits, exact hits, evictions
        assert checker.verdict(text) == clf.classify(text)
