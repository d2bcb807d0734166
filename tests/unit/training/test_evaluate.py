"""Unit tests for training.evaluate and the shape of the hand-written evaluation set."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from smsmon.rules.content.classifier import MarketingClassifier, mask_text
from training.evaluate import EVAL, confusion, evaluate, load_rows

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).resolve().parents[3] / "training" / "corpus" / "sms_corpus.jsonl"
MARKETING_KINDS = {"finance", "retail_notice", "hybrid", "marketing"}


def _row(text: str, label: str, kind: str, sector: str | None = None) -> dict[str, object]:
    declared = "verification" if kind == "verification" else "notification"
    return {"text": text, "label": label, "declared": declared, "kind": kind, "sector": sector}


def test_confusion_counts_marketing_as_positive() -> None:
    rows = [
        (True, _row("a", "marketing", "finance")),
        (False, _row("b", "marketing", "hybrid")),
        (True, _row("c", "notification", "notification")),
        (False, _row("d", "verification", "verification")),
    ]
    m = confusion(rows)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (1, 1, 1, 1)
    assert m["precision"] == 0.5 and m["recall"] == 0.5


def test_evaluate_reports_kinds_and_sector_with_a_tiny_model() -> None:
    # One positive n-gram: "借" (loan) is marketing, everything else is not.
    clf = MarketingClassifier({"借": 10.0}, -5.0, 0.5, (1, 1), "tiny", max_clauses=1, min_chars=1)
    rows = [
        _row("【甲】可借3万元，秒批", "marketing", "finance", "finance"),
        _row("【乙】满100减20", "marketing", "retail_notice", "retail"),
        _row("【甲】借款已到账", "notification", "notification"),
        _row("【丙】验证码1234", "verification", "verification"),
    ]
    report = evaluate(clf, rows)
    assert report["overall"]["tp"] == 1 and report["overall"]["fn"] == 1
    assert report["by_kind"]["finance"]["recall"] == 1.0
    assert report["by_kind"]["retail_notice"]["recall"] == 0.0
    assert report["by_kind"]["notification"]["fp"] == 1
    assert report["misses"] == ["retail_notice"]
    assert report["false_positives"] == ["notification"]
    assert report["sector"]["n"] == 2 and report["sector"]["accuracy"] == 1.0


def test_the_handwritten_set_has_the_promised_shape() -> None:
    rows = load_rows(EVAL)
    kinds = Counter(r["kind"] for r in rows)
    assert len(rows) >= 320
    assert kinds["finance"] >= 70 and kinds["hybrid"] >= 45
    assert kinds["retail_notice"] > 0 and kinds["marketing"] > 0
    assert kinds["notification"] + kinds["verification"] >= 120
    for r in rows:
        assert set(r) == {"text", "label", "declared", "kind", "sector"}
        assert r["declared"] in ("marketing", "notification", "verification")
        if r["kind"] in MARKETING_KINDS:
            assert r["label"] == "marketing" and r["sector"] in ("retail", "finance", "other")
        else:
            assert r["label"] == r["kind"] == r["declared"] and r["sector"] is None
    assert len({r["text"] for r in rows}) == len(rows)


def test_no_handwritten_text_is_a_corpus_row_after_masking() -> None:
    """The evaluation set was written apart from the corpus: no row equals a training row."""
    corpus = {mask_text(r["text"]) for r in load_rows(CORPUS)}
    assert not [r["text"] for r in load_rows(EVAL) if mask_text(r["text"]) in corpus]
