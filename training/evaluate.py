"""Score the shipped marketing classifier on the hand-written evaluation set (and the simulator).

`python -m training.evaluate` prints precision and recall of the "is marketing" decision
overall and per kind, the false-positive rate of each control kind, and the accuracy of
`marketing_sector` on the marketing rows. `--simulator N` also classifies the first N
verification texts of the traffic simulator (`smsmon.tools.simulator`) and prints their
false-positive rate. Nothing here fits or tunes anything.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smsmon.rules.content.classifier import MarketingClassifier
from smsmon.rules.content.sector import marketing_sector

EVAL = Path(__file__).resolve().parent / "eval" / "handwritten.jsonl"
MARKETING_KINDS = ("finance", "retail_notice", "hybrid", "marketing")
CONTROL_KINDS = ("notification", "verification")

Row = dict[str, Any]


def load_rows(path: Path) -> list[Row]:
    """Read a JSONL file of labelled texts."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def confusion(preds: Sequence[tuple[bool, Row]]) -> dict[str, Any]:
    """Counts, precision and recall for label == marketing as the positive class."""
    tp = sum(p and r["label"] == "marketing" for p, r in preds)
    fp = sum(p and r["label"] != "marketing" for p, r in preds)
    fn = sum(not p and r["label"] == "marketing" for p, r in preds)
    tn = len(preds) - tp - fp - fn
    return {
        "n": len(preds),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
    }


def evaluate(clf: MarketingClassifier, rows: Sequence[Row]) -> dict[str, Any]:
    """The figures printed by `main`, as a dict (used by the unit test of this script)."""
    preds = [(clf.classify(r["text"]).is_marketing, r) for r in rows]
    by_kind = {
        k: confusion([(p, r) for p, r in preds if r["kind"] == k])
        for k in (*MARKETING_KINDS, *CONTROL_KINDS)
        if any(r["kind"] == k for r in rows)
    }
    misdeclared = confusion([(p, r) for p, r in preds if r["declared"] != "marketing"])
    sector_rows = [r for r in rows if r["label"] == "marketing" and r.get("sector")]
    sector_pairs = Counter((r["sector"], marketing_sector(r["text"])) for r in sector_rows)
    sector_ok = sum(n for (gold, got), n in sector_pairs.items() if gold == got)
    return {
        "model": clf.version,
        "overall": confusion(preds),
        "declared_notification_or_verification": misdeclared,
        "by_kind": by_kind,
        "sector": {
            "n": len(sector_rows),
            "accuracy": sector_ok / len(sector_rows) if sector_rows else 1.0,
            "confusion": {f"{g}->{p}": n for (g, p), n in sorted(sector_pairs.items())},
        },
        "misses": sorted(r["kind"] for p, r in preds if not p and r["label"] == "marketing"),
        "false_positives": sorted(r["kind"] for p, r in preds if p and r["label"] != "marketing"),
    }


def simulator_verification_fp(clf: MarketingClassifier, n: int, seed: int) -> tuple[int, int]:
    """(false positives, texts) over the first `n` verification mt texts of a simulated day."""
    from smsmon.tools.simulator import SimConfig, generate

    sim = generate(SimConfig(seed=seed, base_rate=200.0))
    seen = fp = 0
    for _kind, _key, value in sim.records():
        if value.get("category") != "verification" or "text" not in value:
            continue
        seen += 1
        fp += clf.classify(value["text"]).is_marketing
        if seen >= n:
            break
    return fp, seen


def _line(name: str, m: dict[str, Any]) -> str:
    return (
        f"{name:<40} n {m['n']:>4}  precision {m['precision']:.4f}  recall {m['recall']:.4f}"
        f"  (tp {m['tp']} fp {m['fp']} fn {m['fn']} tn {m['tn']})"
    )


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the evaluation report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval", type=Path, default=EVAL, help="JSONL evaluation set")
    parser.add_argument("--model", type=Path, default=None, help="model JSON (default: shipped)")
    parser.add_argument("--simulator", type=int, default=0, metavar="N")
    parser.add_argument("--simulator-seed", type=int, default=1)
    args = parser.parse_args(argv)
    clf = MarketingClassifier.load(args.model)
    report = evaluate(clf, load_rows(args.eval))
    print(f"model {report['model']} (threshold {clf.threshold:g}) on {args.eval}")
    print(_line("overall (is marketing)", report["overall"]))
    print(
        _line("declared notification/verification", report["declared_notification_or_verification"])
    )
    for kind, m in report["by_kind"].items():
        if kind in MARKETING_KINDS:
            print(f"  kind {kind:<14} n {m['n']:>4}  recall {m['recall']:.4f}  (missed {m['fn']})")
        else:
            rate = m["fp"] / m["n"] if m["n"] else 0.0
            print(f"  kind {kind:<14} n {m['n']:>4}  false positives {m['fp']} ({rate:.2%})")
    s = report["sector"]
    print(f"sector accuracy {s['accuracy']:.4f} on {s['n']} marketing rows: {s['confusion']}")
    if args.simulator:
        fp, seen = simulator_verification_fp(clf, args.simulator, args.simulator_seed)
        rate = fp / seen if seen else 0.0
        print(f"simulator verification texts: {fp} false positives in {seen} ({rate:.4%})")


if __name__ == "__main__":
    main()
