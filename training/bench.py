"""Measure pure-Python inference cost per message (classifier and opt-out check)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from smsmon.rules.content.classifier import MarketingClassifier
from smsmon.rules.content.optout import has_optout

CORPUS = Path(__file__).resolve().parent / "corpus" / "sms_corpus.jsonl"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def per_message_us(fn: Callable[[str], object], texts: Sequence[str], rounds: int) -> list[float]:
    """Run `fn` over `texts` `rounds` times; return µs per message for each round."""
    for t in texts[:50]:  # warm-up
        fn(t)
    results = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for t in texts:
            fn(t)
        results.append((time.perf_counter_ns() - start) / 1000 / len(texts))
    return results


def main(argv: list[str] | None = None) -> None:
    """Print model load time and median µs/message over the corpus texts."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with args.corpus.open(encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh if line.strip()]

    start = time.perf_counter_ns()
    clf = MarketingClassifier.load()  # the shipped package-data model
    load_ms = (time.perf_counter_ns() - start) / 1e6

    mean_chars = statistics.fmean(len(t) for t in texts)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {_cpu_model()}")
    print(f"model {clf.version}: {clf.vocabulary_size} n-grams, loaded in {load_ms:.1f} ms")
    print(f"{len(texts)} messages, mean {mean_chars:.0f} characters, {args.rounds} rounds")
    for name, fn in (("classify", clf.classify), ("has_optout", has_optout)):
        rounds = per_message_us(fn, texts, args.rounds)
        print(
            f"{name:>10}: median {statistics.median(rounds):.1f} µs/message "
            f"(min {min(rounds):.1f}, max {max(rounds):.1f})"
        )


if __name__ == "__main__":
    main()
