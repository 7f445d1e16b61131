"""Add new labelled texts (a scored holdout, a helper's candidates) to the safety training corpus.

    .venv/bin/python benchmarks/merge_safety_data.py FILE... [--corpus PATH] [--dry-run]

Each row keeps its text, labels, kind, family and role; its split comes from its family, by the rule
every round has used (`split_of`): `dev` when the family name's sha256 is divisible by 4, else
`train`, so a family is on one side only and the same family always lands on the same side. A
translation's family is named `<source family>@<language>` and joins the side its source family
is on in the corpus, so an idea and its translations never straddle the split. A text
the corpus (or an earlier file of the same call) already holds, compared without case or
punctuation, is skipped; a family the corpus already holds is refused, since it would join a split
it was not drawn for. Prints what it added per file, split and kind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "safety_corpus.jsonl"
KEYS = ("text", "labels", "kind", "family")
_NOT_WORD = re.compile(r"[\W_]+")


def split_of(family: str) -> str:
    """`dev` for a quarter of the families (sha256 of the name divisible by 4), `train` for the rest;
    a translation's family (`<source>@<language>`) by its source's name."""
    source = family.partition("@")[0]
    return "dev" if int(hashlib.sha256(source.encode()).hexdigest(), 16) % 4 == 0 else "train"


def identity(text: str) -> str:
    """A text without case or punctuation: two texts that differ only in those are the same text
    (letters and digits of every script count: two Russian texts are not the same text)."""
    return _NOT_WORD.sub(" ", text.lower()).strip()


def merged(corpus: list[dict[str, Any]], new: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The corpus with the new rows appended (split by family, known texts skipped), and how many
    were skipped. A translation (family `<source>@<language>`) takes the side its source family has
    in the corpus (the older set's families are all `train`, whatever their hash). Raises
    ValueError for a row whose family the corpus already holds, or a translation whose source it
    does not."""
    seen = {identity(row["text"]) for row in corpus}
    sides = {row["family"]: row["split"] for row in corpus}
    old_families = set(sides)
    out, skipped = list(corpus), 0
    for row in new:
        if row["family"] in old_families:
            raise ValueError(f"the corpus already holds the family {row['family']!r}")
        key = identity(row["text"])
        if key in seen:
            skipped += 1
            continue
        seen.add(key)
        source, translated, _ = row["family"].partition("@")
        if translated and source not in sides:
            raise ValueError(f"the corpus holds no family {source!r} for the translation {row['family']!r}")
        added = {k: row[k] for k in KEYS} | {
            "split": sides[source] if translated else split_of(row["family"])
        }
        if row.get("role"):
            added["role"] = row["role"]
        out.append(added)
    return out, skipped


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--dry-run", action="store_true", help="report, write nothing")
    args = parser.parse_args()
    corpus = read(args.corpus)
    for path in args.files:
        before = len(corpus)
        corpus, skipped = merged(corpus, read(path))
        counts = Counter((row["split"], row["kind"]) for row in corpus[before:])
        added = len(corpus) - before
        print(f"{path.name}: added {added}, skipped {skipped} known texts; {dict(sorted(counts.items()))}")
    print(f"corpus: {len(corpus)} texts")
    if not args.dry_run:
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in corpus)
        args.corpus.write_text(lines, encoding="utf-8")


if __name__ == "__main__":
    main()
