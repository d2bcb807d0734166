"""Generate the synthetic labelled SMS corpus sms_corpus.jsonl from templates (seeded)."""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

from smsmon.rules.content.classifier import mask_text
from training.corpus.families_controls import CONTROLS
from training.corpus.families_finance import FINANCE
from training.corpus.families_general import GENERAL
from training.corpus.slots import ANY_SENDER, BRANDS, CITIES, CITY_SENDERS, OPTOUTS, SIMPLE, Family

SEED = 20240601
CORPUS = Path(__file__).with_name("sms_corpus.jsonl")
ROWS_PER_FAMILY = {"marketing": 14, "notification": 14, "verification": 18}

# The first corpus's families come first and in their original order: generation is
# sequential, so the rows of the older families are unchanged by the families added after.
FAMILIES: tuple[Family, ...] = GENERAL + CONTROLS + FINANCE

# The sector of a marketing row whose family does not name one: the sender's domain.
_SECTOR_OF_DOMAIN = {
    "finance": "finance",
    "banking": "finance",
    "insurance": "finance",
    "ecommerce": "retail",
    "retail": "retail",
    "food_delivery": "retail",
}


def sector_of(family: Family, domain: str) -> str:
    """`retail`, `finance` or `other` for a marketing row; empty for any other label."""
    if family.label != "marketing":
        return ""
    return family.sector or _SECTOR_OF_DOMAIN.get(domain, "other")


# --------------------------------------------------------------------------- rendering
_ALT = re.compile(r"\[\[(.*?)\]\]", re.S)
_SLOT = re.compile(r"\{(\w+)\}")
_SENDER_SLOT = re.compile(r"\{(" + "|".join([*BRANDS, *CITY_SENDERS, "any"]) + r")\}")


def _sender(key: str, rng: random.Random) -> tuple[str, str]:
    """Return (signature text, domain) for a sender slot."""
    if key == "any":
        key = rng.choice(ANY_SENDER)
    if key in BRANDS:
        domain, names = BRANDS[key]
        return rng.choice(names), domain
    domain, suffixes = CITY_SENDERS[key]
    return rng.choice(CITIES) + rng.choice(suffixes), domain


def render(family: Family, rng: random.Random) -> tuple[str, str]:
    """Render one message of `family`: returns (text, domain of the sender)."""
    template = rng.choice(family.templates)
    text = _ALT.sub(lambda m: rng.choice(m.group(1).split("|")), template)
    domains: list[str] = []

    def sender(m: re.Match[str]) -> str:
        name, domain = _sender(m.group(1), rng)
        domains.append(domain)
        return name

    text = _SENDER_SLOT.sub(sender, text)
    text = _SLOT.sub(lambda m: SIMPLE[m.group(1)](rng), text)
    if family.optout_rate and rng.random() < family.optout_rate:
        text += rng.choice(("", " ", "，")) + rng.choice(OPTOUTS)
    # Some senders put the signature last.
    sig = re.match(r"【[^】]+】", text)
    if sig and rng.random() < 0.12:
        text = text[sig.end() :] + sig.group(0)
    return text, domains[0] if domains else "unknown"


def build(seed: int = SEED) -> list[dict[str, str]]:
    """Generate every row of the corpus, deterministically for a given seed."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for family in FAMILIES:
        want = ROWS_PER_FAMILY[family.label]
        made = attempts = 0
        while made < want and attempts < want * 40:
            attempts += 1
            text, domain = render(family, rng)
            key = mask_text(text)
            if key in seen:
                continue
            seen.add(key)
            made += 1
            rows.append(
                {
                    "text": text,
                    "label": family.label,
                    "declared": family.declared,
                    "family": family.fid,
                    "domain": domain,
                    "sector": sector_of(family, domain),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Write the corpus JSONL and print its size per label and per domain."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=CORPUS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    rows = build(args.seed)
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    args.out.write_text(data, encoding="utf-8")
    digest = hashlib.sha256(data.encode("utf-8")).hexdigest()
    print(f"wrote {len(rows)} rows to {args.out} (sha256 {digest[:16]})")
    print("per label:", dict(sorted(Counter(r["label"] for r in rows).items())))
    print("per declared:", dict(sorted(Counter(r["declared"] for r in rows).items())))
    print("per domain:", dict(sorted(Counter(r["domain"] for r in rows).items())))
    print("per sector:", dict(sorted(Counter(r["sector"] for r in rows).items())))
    print("families:", len({r["family"] for r in rows}))


if __name__ == "__main__":
    main()
