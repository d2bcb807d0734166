"""Train the marketing classifier on the synthetic corpus and write marketing-v2.json."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from smsmon.rules.content.classifier import (
    FORMAT,
    MarketingClassifier,
    char_ngrams,
    mask_text,
    segments,
)

SEED = 20240601
NGRAM_RANGE = (1, 3)
MIN_DF = 2
MIN_FAMILIES = 2
TEST_FRACTION = 0.2
C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
FOLDS = 5
LOSS_TOLERANCE = 0.05
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(4, 20))  # 0.20 .. 0.95
NEAR_DUP_JACCARD = 0.8
PRUNE_BELOW = 1e-3
VERSION = "marketing-v2"
# Parts scored besides the whole text (see classifier.segments); the trainer uses the same.
MAX_CLAUSES = 3
MIN_CHARS = 4

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus" / "sms_corpus.jsonl"
HELDOUT = HERE / "corpus" / "heldout.jsonl"
MODEL = HERE.parent / "smsmon" / "rules" / "content" / "model" / f"{VERSION}.json"

Row = dict[str, str]


def load_rows(path: Path) -> list[Row]:
    """Read the JSONL corpus."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _groups(rows: Sequence[Row]) -> dict[tuple[str, str], list[str]]:
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        groups[(r["label"], r["declared"])].add(r["family"])
    return {k: sorted(v) for k, v in sorted(groups.items())}


def split_families(rows: Sequence[Row], seed: int) -> tuple[set[str], set[str]]:
    """Split template families into (train, test), stratified by (label, declared).

    A family lands on exactly one side; the test families are never seen while tuning.
    """
    rng = random.Random(seed)
    train: set[str] = set()
    test: set[str] = set()
    for fams in _groups(rows).values():
        fams = list(fams)
        rng.shuffle(fams)
        n_test = max(1, round(TEST_FRACTION * len(fams)))
        test.update(fams[:n_test])
        train.update(fams[n_test:])
    return train, test


def fold_families(rows: Sequence[Row], k: int, seed: int) -> list[set[str]]:
    """Deal the families of `rows` into k validation folds, stratified by (label, declared)."""
    rng = random.Random(seed + 1)
    folds: list[set[str]] = [set() for _ in range(k)]
    offset = 0
    for fams in _groups(rows).values():
        fams = list(fams)
        rng.shuffle(fams)
        for i, fam in enumerate(fams):
            folds[(offset + i) % k].add(fam)
        offset += len(fams)
    return folds


def _shingles(masked: str) -> frozenset[str]:
    return frozenset(masked[i : i + 3] for i in range(max(1, len(masked) - 2)))


def drop_near_duplicates(
    keep_from: Sequence[Row], against: Sequence[Row], threshold: float
) -> tuple[list[Row], int]:
    """Drop rows of `keep_from` whose masked text is a near-duplicate of any row of `against`.

    Near-duplicate: identical after masking, or character-3-gram Jaccard >= threshold.
    """
    ref = [_shingles(mask_text(r["text"])) for r in against]
    ref_exact = {mask_text(r["text"]) for r in against}
    kept: list[Row] = []
    dropped = 0
    for r in keep_from:
        masked = mask_text(r["text"])
        sh = _shingles(masked)
        dup = masked in ref_exact
        if not dup:
            for other in ref:
                small, big = sorted((len(sh), len(other)))
                if big == 0 or small / big < threshold:
                    continue
                inter = len(sh & other)
                if inter / (len(sh) + len(other) - inter) >= threshold:
                    dup = True
                    break
        if dup:
            dropped += 1
        else:
            kept.append(r)
    return kept, dropped


def _features(rows: Iterable[Row]) -> list[set[str]]:
    lo, hi = NGRAM_RANGE
    return [char_ngrams(mask_text(r["text"]), lo, hi) for r in rows]


def _vocabulary(docs: Sequence[set[str]], rows: Sequence[Row]) -> list[str]:
    """N-grams seen in at least MIN_FAMILIES template families (not just MIN_DF rows).

    An n-gram that only one template family uses is an artefact of that template, not a
    signal that generalises to unseen wording, so it gets no weight.
    """
    families: dict[str, set[str]] = defaultdict(set)
    df: Counter[str] = Counter()
    for d, r in zip(docs, rows, strict=True):
        df.update(d)
        for g in d:
            families[g].add(r["family"])
    return sorted(g for g, n in df.items() if n >= MIN_DF and len(families[g]) >= MIN_FAMILIES)


def _lr(
    feats: Sequence[set[str]], ys: Sequence[int], index: dict[str, int], c: float, seed: int
) -> tuple[dict[str, float], float]:
    import numpy as np
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    indptr = [0]
    indices: list[int] = []
    for d in feats:
        indices.extend(sorted(index[g] for g in d if g in index))
        indptr.append(len(indices))
    x = csr_matrix(
        (np.ones(len(indices)), np.array(indices, dtype=np.int64), np.array(indptr)),
        shape=(len(feats), len(index)),
    )
    model = LogisticRegression(
        C=c, solver="lbfgs", max_iter=5000, class_weight="balanced", random_state=seed
    )
    model.fit(x, np.array(ys))
    coef = model.coef_[0]
    weights = {g: round(float(coef[i]), 6) for g, i in index.items()}
    weights = {g: w for g, w in weights.items() if abs(w) >= PRUNE_BELOW}
    return weights, round(float(model.intercept_[0]), 6)


def fit_model(rows: Sequence[Row], c: float, seed: int) -> tuple[dict[str, float], float]:
    """Fit L2 logistic regression on binary n-gram presence the way the model is applied.

    The classifier scores the whole text and every part of it (`segments`) and keeps the
    maximum, so the fit sees the same instances (multiple-instance learning, one round):
    every part of a non-marketing text is a negative (a notice's clause alone is not
    marketing), every whole text keeps its label, and each marketing text adds its
    highest-scoring part under a first fit as a positive (the promotion inside a hybrid).
    Returns (weights, bias).
    """
    lo, hi = NGRAM_RANGE
    docs = _features(rows)
    index = {g: i for i, g in enumerate(_vocabulary(docs, rows))}
    feats: list[set[str]] = list(docs)
    ys = [1 if r["label"] == "marketing" else 0 for r in rows]
    positive_parts: list[list[set[str]]] = []
    for r in rows:
        parts = [
            char_ngrams(p, lo, hi) for p in segments(mask_text(r["text"]), MAX_CLAUSES, MIN_CHARS)
        ]
        if r["label"] == "marketing":
            positive_parts.append(parts)
        else:
            feats.extend(parts)
            ys.extend([0] * len(parts))
    weights, _ = _lr(feats, ys, index, c, seed)
    for parts in positive_parts:
        if parts:
            feats.append(max(parts, key=lambda p: sum(weights.get(g, 0.0) for g in p)))
            ys.append(1)
    return _lr(feats, ys, index, c, seed)


def _classifier(weights: dict[str, float], bias: float, threshold: float) -> MarketingClassifier:
    return MarketingClassifier(
        weights,
        bias,
        threshold,
        NGRAM_RANGE,
        VERSION,
        max_clauses=MAX_CLAUSES,
        min_chars=MIN_CHARS,
    )


def metrics(clf: MarketingClassifier, rows: Sequence[Row]) -> dict[str, Any]:
    """Precision, recall, F1 and confusion counts for label == marketing as positive."""
    return _confusion((clf.classify(r["text"]).is_marketing, r) for r in rows)


def _metrics_from_scores(scored: Sequence[tuple[float, Row]], threshold: float) -> dict[str, Any]:
    return _confusion((p >= threshold, r) for p, r in scored)


def _confusion(preds: Iterable[tuple[bool, Row]]) -> dict[str, Any]:
    tp = fp = fn = tn = n = 0
    for pred, r in preds:
        n += 1
        gold = r["label"] == "marketing"
        tp += pred and gold
        fp += pred and not gold
        fn += gold and not pred
        tn += not pred and not gold
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "n": n,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }


def _log_loss(scored: Sequence[tuple[float, Row]]) -> float:
    """Mean negative log-likelihood of the gold labels (used to pick C)."""
    total = 0.0
    for p, r in scored:
        p = min(max(p, 1e-9), 1 - 1e-9)
        total -= math.log(p if r["label"] == "marketing" else 1 - p)
    return total / max(1, len(scored))


def misdeclared_subset(rows: Sequence[Row]) -> list[Row]:
    """Rows declared notification/verification: where content.misdeclared applies."""
    return [r for r in rows if r["declared"] in ("notification", "verification")]


def _training_date() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch else dt.datetime.now(dt.UTC)
    return when.date().isoformat()


def _counts(rows: Sequence[Row]) -> dict[str, int]:
    return dict(sorted(Counter(r["label"] for r in rows).items()))


def train(corpus: Path, model_out: Path, heldout_out: Path, seed: int) -> dict[str, Any]:
    """Run the whole pipeline and write the model and the held-out split; return the report."""
    raw = corpus.read_bytes()
    rows = load_rows(corpus)
    train_fams, test_fams = split_families(rows, seed)
    train_rows = [r for r in rows if r["family"] in train_fams]
    test = [r for r in rows if r["family"] in test_fams]
    test, dropped_test = drop_near_duplicates(test, train_rows, NEAR_DUP_JACCARD)

    # Tuning sees the train families only: grouped K-fold cross-validation, each fold a
    # validation split of whole families carved from train (near-duplicates of the fold's
    # fitting rows removed).  C is chosen by out-of-fold log-loss, then the threshold by
    # out-of-fold F1 (ties go to the threshold closest to 0.5).
    folds = fold_families(train_rows, FOLDS, seed)
    fold_data: list[tuple[list[Row], list[Row]]] = []
    dropped_val = 0
    for fold in folds:
        fit = [r for r in train_rows if r["family"] not in fold]
        val = [r for r in train_rows if r["family"] in fold]
        val, dropped = drop_near_duplicates(val, fit, NEAR_DUP_JACCARD)
        dropped_val += dropped
        fold_data.append((fit, val))
    tuning: list[dict[str, Any]] = []
    oof: dict[float, list[tuple[float, Row]]] = {}
    for c in C_GRID:
        scored: list[tuple[float, Row]] = []
        for fit, val in fold_data:
            w, b = fit_model(fit, c, seed)
            clf = _classifier(w, b, 0.5)
            scored.extend((clf.score_masked(mask_text(r["text"])), r) for r in val)
        oof[c] = scored
        tuning.append({"C": c, "cv_log_loss": round(_log_loss(scored), 5)})
    # Prefer regularisation: the smallest C within LOSS_TOLERANCE of the best log-loss.
    best_loss = min(t["cv_log_loss"] for t in tuning)
    best_c = min(t["C"] for t in tuning if t["cv_log_loss"] <= best_loss * (1 + LOSS_TOLERANCE))
    best_scores = oof[best_c]
    thresholds = [
        (_metrics_from_scores(best_scores, t)["f1"], -abs(t - 0.5), t) for t in THRESHOLD_GRID
    ]
    threshold = max(thresholds)[2]
    val_metrics = _metrics_from_scores(best_scores, threshold)
    val_misdeclared = _metrics_from_scores(
        [(p, r) for p, r in best_scores if r["declared"] != "marketing"], threshold
    )

    # Final model: refit on all train families with the chosen C, keep the threshold.
    weights, bias = fit_model(train_rows, best_c, seed)
    final = _classifier(weights, bias, threshold)
    test_metrics = metrics(final, test)
    test_misdeclared = metrics(final, misdeclared_subset(test))

    meta: dict[str, Any] = {
        "trained_on": _training_date(),
        "trainer": "sklearn.linear_model.LogisticRegression(lbfgs, L2, class_weight=balanced) "
        "on whole texts and their parts (negatives: all parts of non-marketing texts; "
        "positives: the best part of each marketing text under a first fit)",
        "seed": seed,
        "C": best_c,
        "threshold_grid": list(THRESHOLD_GRID),
        "min_df": MIN_DF,
        "min_families": MIN_FAMILIES,
        "prune_below": PRUNE_BELOW,
        "corpus": {
            "path": "corpus/sms_corpus.jsonl",
            "sha256": hashlib.sha256(raw).hexdigest(),
            "rows": len(rows),
            "per_label": _counts(rows),
            "families": len({r["family"] for r in rows}),
        },
        "split": {
            "by": "template family, stratified by (label, declared)",
            "validation": f"grouped {FOLDS}-fold cross-validation over train families",
            "train_rows": len(train_rows),
            "test_rows": len(test),
            "train_families": sorted(train_fams),
            "validation_folds": [sorted(f) for f in folds],
            "test_families": sorted(test_fams),
            "near_duplicates_dropped": {"test": dropped_test, "val": dropped_val},
            "near_duplicate_rule": f"identical after masking or char-3-gram Jaccard >= "
            f"{NEAR_DUP_JACCARD}",
            "per_label": {"train": _counts(train_rows), "test": _counts(test)},
        },
        "tuning": tuning,
        "validation_out_of_fold": {
            "overall": val_metrics,
            "declared_notification_or_verification": val_misdeclared,
        },
        "heldout": {
            "positive": "label == marketing",
            "overall": test_metrics,
            "declared_notification_or_verification": test_misdeclared,
        },
        "vocabulary_size": len(weights),
    }
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "ngram_range": list(NGRAM_RANGE),
        "features": "binary presence of character n-grams of mask_text(text)",
        "scoring": "sigmoid of the max logit over the whole text and each run of 1 to "
        "max_clauses consecutive clauses (ending at 。!?;,:) of >= min_chars masked characters",
        "segments": {"max_clauses": MAX_CLAUSES, "min_chars": MIN_CHARS},
        "masking": "NFKC, casefold, URL -> U+E000, digit run -> '0', whitespace removed",
        "bias": bias,
        "threshold": threshold,
        "metadata": meta,
        "weights": dict(sorted(weights.items())),
    }
    model_out.parent.mkdir(parents=True, exist_ok=True)
    model_out.write_text(
        json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=False) + "\n", encoding="utf-8"
    )
    heldout_out.write_text(
        "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in test),
        encoding="utf-8",
    )
    return meta


def split_variance(corpus: Path, c: float, threshold: float, seeds: Sequence[int]) -> None:
    """Print held-out metrics for other family splits (fixed C and threshold; no artefacts).

    Shows how much the single held-out figure depends on which families were drawn.
    """
    rows = load_rows(corpus)
    for s in seeds:
        train_fams, test_fams = split_families(rows, s)
        train_rows = [r for r in rows if r["family"] in train_fams]
        test = [r for r in rows if r["family"] in test_fams]
        test, _ = drop_near_duplicates(test, train_rows, NEAR_DUP_JACCARD)
        weights, bias = fit_model(train_rows, c, s)
        clf = _classifier(weights, bias, threshold)
        a, d = metrics(clf, test), metrics(clf, misdeclared_subset(test))
        print(
            f"  split seed {s}: precision {a['precision']:.4f} recall {a['recall']:.4f}; "
            f"declared notification/verification precision {d['precision']:.4f} "
            f"recall {d['recall']:.4f} (n {a['n']})"
        )


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: train, write the artefacts and print the held-out metrics."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--model-out", type=Path, default=MODEL)
    parser.add_argument("--heldout-out", type=Path, default=HELDOUT)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--split-seeds",
        type=int,
        default=0,
        metavar="N",
        help="afterwards, also report held-out metrics for N other family splits",
    )
    args = parser.parse_args(argv)
    meta = train(args.corpus, args.model_out, args.heldout_out, args.seed)
    split = meta["split"]
    print(f"corpus {meta['corpus']['rows']} rows, sha256 {meta['corpus']['sha256'][:16]}")
    print(
        f"split by family: train {split['train_rows']} / test {split['test_rows']} rows; "
        f"near-duplicates dropped {split['near_duplicates_dropped']}"
    )
    for t in meta["tuning"]:
        print(f"  C={t['C']:<6} cross-validated log-loss {t['cv_log_loss']}")
    print(f"chosen C={meta['C']}, vocabulary {meta['vocabulary_size']} n-grams")
    for name, m in meta["validation_out_of_fold"].items():
        print(f"out-of-fold validation {name}: {m}")
    for name, m in meta["heldout"].items():
        if isinstance(m, dict):
            print(
                f"held-out {name}: precision {m['precision']:.4f} recall {m['recall']:.4f} "
                f"(tp {m['tp']} fp {m['fp']} fn {m['fn']} tn {m['tn']}, n {m['n']})"
            )
    print(f"wrote {args.model_out} and {args.heldout_out}")
    if args.split_seeds:
        print(f"held-out metrics on {args.split_seeds} other family splits (C={meta['C']}):")
        threshold = json.loads(args.model_out.read_text(encoding="utf-8"))["threshold"]
        seeds = range(args.seed + 1, args.seed + 1 + args.split_seeds)
        split_variance(args.corpus, meta["C"], threshold, seeds)


if __name__ == "__main__":
    main()
