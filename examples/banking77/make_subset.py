"""Regenerate `banking_subset.csv`: 40 messages for each of 8 BANKING77 intents.

The messages are drawn from the original train and test files together, in an order fixed by
sha256(seed, text) (no random module, so every Python gives the same subset).

    python examples/banking77/make_subset.py [--source ../shared/data/banking77]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
from pathlib import Path

INTENTS = (
    "card_arrival",
    "lost_or_stolen_card",
    "declined_card_payment",
    "exchange_rate",
    "top_up_failed",
    "change_pin",
    "pending_transfer",
    "request_refund",
)
PER_INTENT = 40
SEED = 0
HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "data" / "banking77"


def read(source: Path) -> dict[str, list[tuple[str, str]]]:
    """(text, origin) pairs per intent, duplicates (after whitespace cleanup) removed."""
    by_intent: dict[str, list[tuple[str, str]]] = {intent: [] for intent in INTENTS}
    seen: set[str] = set()
    for name in ("train.csv", "test.csv"):
        with open(source / name, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                text = " ".join(row["text"].split())
                if row["category"] in by_intent and text.lower() not in seen:
                    seen.add(text.lower())
                    by_intent[row["category"]].append((text, f"{name}:{reader.line_num}"))
    return by_intent


def pick(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    ranked = sorted(rows, key=lambda row: hashlib.sha256(f"{SEED}:{row[0]}".encode()).hexdigest())
    return ranked[:PER_INTENT]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with train.csv, test.csv")
    parser.add_argument("--out", type=Path, default=HERE / "banking_subset.csv")
    args = parser.parse_args()
    by_intent = read(args.source)
    with open(args.out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "category", "origin"])
        for intent in INTENTS:
            for text, origin in pick(by_intent[intent]):
                writer.writerow([text, intent, origin])
    print(args.out)


if __name__ == "__main__":
    main()
