"""How well the offline safety filters classify tests/data/safety_eval.jsonl, and what they cost.

    .venv/bin/python benchmarks/safety_eval.py [--repeat 3] [--out benchmarks/results/safety_eval.json]

For each filter (and for the default offline ensemble, `SafetyService` with `offline_filters`) and
each category: precision, recall and false-positive rate, where "flagged" means the category would
be blocked at the default policy (severity medium or above); jailbreak counts as flagged when
detected (`ensemble@low`: what a policy blocking from `low` up would block). A filter is reported
only for the categories it can raise at all. Then the time each
filter adds per request (p50, p95 over every text, `--repeat` times), and the cost of one output
window check. Prints a table and writes the numbers as JSON.

The set has a `dev` split (the patterns and thresholds were tuned on it) and a `holdout` split
(written before tuning and not tuned on); the ensemble is reported on each, since the dev numbers
flatter the hand-written patterns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimi.safety import (
    ClassifierFilter,
    Decision,
    FilterResult,
    JailbreakFilter,
    PatternFilter,
    SafetyPolicy,
    SafetyService,
    Severity,
    offline_filters,
)
from aimi.safety.base import Category

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "safety_eval.jsonl"
LABELS = [*(c.value for c in Category), "jailbreak"]


@dataclass(frozen=True)
class Example:
    text: str
    labels: frozenset[str]
    kind: str
    split: str


def load(path: Path) -> list[Example]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Example(r["text"], frozenset(r["labels"]), r["kind"], r.get("split", "dev")) for r in rows]


def flags_of_result(result: FilterResult) -> set[str]:
    flagged = {c.value for c, s in result.severities.items() if s.at_least(Severity.MEDIUM)}
    return flagged | ({"jailbreak"} if result.jailbreak else set())


def flags_of_decision(decision: Decision, at: Severity | None = None) -> set[str]:
    """What the decision blocks; with `at`, what a policy blocking from `at` up would block."""
    if at is None:
        flagged = {c.value for c, d in decision.categories.items() if d.filtered}
    else:
        flagged = {c.value for c, d in decision.categories.items() if d.severity and d.severity.at_least(at)}
    return flagged | ({"jailbreak"} if decision.jailbreak.detected else set())


def rates(examples: list[Example], flags: list[set[str]], label: str) -> dict[str, Any]:
    tp = sum(label in f and label in e.labels for e, f in zip(examples, flags, strict=True))
    fp = sum(label in f and label not in e.labels for e, f in zip(examples, flags, strict=True))
    fn = sum(label not in f and label in e.labels for e, f in zip(examples, flags, strict=True))
    tn = len(examples) - tp - fp - fn
    benign = [(e, f) for e, f in zip(examples, flags, strict=True) if e.kind != "harmful"]
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "fpr": fp / (fp + tn) if fp + tn else None,
        "benign_fpr": sum(label in f for _, f in benign) / len(benign) if benign else None,
    }


def overall(examples: list[Example], flags: list[set[str]]) -> dict[str, Any]:
    def share(kind: str) -> float | None:
        picked = [bool(f) for e, f in zip(examples, flags, strict=True) if e.kind == kind]
        return sum(picked) / len(picked) if picked else None

    return {"harmful_blocked": share("harmful"), "benign_tricky_blocked": share("benign_tricky"),
            "benign_blocked": share("benign")}  # fmt: skip


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 3),
    }


async def time_calls(check: Any, texts: list[str], repeat: int) -> tuple[list[Any], list[float]]:
    outputs, samples = [], []
    for round_ in range(repeat):
        for text in texts:
            start = time.perf_counter()
            output = await check(text)
            samples.append(time.perf_counter() - start)
            if round_ == 0:
                outputs.append(output)
    return outputs, samples


def fmt(value: float | None) -> str:
    return "   -" if value is None else f"{value:.2f}"


async def evaluate(repeat: int) -> dict[str, Any]:
    examples = load(DATA)
    texts = [e.text for e in examples]
    started = time.perf_counter()
    classifier = ClassifierFilter.load()
    load_s = time.perf_counter() - started
    filters = {
        "toxicity-classifier": classifier,
        "patterns": PatternFilter(),
        "jailbreak-patterns": JailbreakFilter(),
    }
    covers = {
        "toxicity-classifier": ["hate", "violence", "sexual"],
        "patterns": ["hate", "sexual", "violence", "self_harm"],
        "jailbreak-patterns": ["jailbreak"],
        "ensemble": LABELS,
        "ensemble@low": LABELS,
    }
    inputs, outputs = offline_filters(classifier)
    service = SafetyService(SafetyPolicy(), input_filters=inputs, output_filters=outputs)

    report: dict[str, Any] = {"examples": len(examples), "classifier_load_s": round(load_s, 3), "filters": {}}
    flags_by: dict[str, list[set[str]]] = {}
    for name, safety_filter in filters.items():
        results, samples = await time_calls(safety_filter.check, texts, repeat)
        flags_by[name] = [flags_of_result(r) for r in results]
        report["filters"][name] = {"latency": percentiles(samples)}
    decisions, samples = await time_calls(service.check_input, texts, repeat)
    flags_by["ensemble"] = [flags_of_decision(d) for d in decisions]
    report["filters"]["ensemble"] = {"latency": percentiles(samples)}
    flags_by["ensemble@low"] = [flags_of_decision(d, Severity.LOW) for d in decisions]
    report["filters"]["ensemble@low"] = {"latency": percentiles(samples)}

    for name, flags in flags_by.items():
        entry = report["filters"][name]
        entry["categories"] = {label: rates(examples, flags, label) for label in covers[name]}
        entry["overall"] = overall(examples, flags)
    for name in ("ensemble", "ensemble@low"):
        for split in ("dev", "holdout"):
            picked = [i for i, e in enumerate(examples) if e.split == split]
            subset = [examples[i] for i in picked]
            flags = [flags_by[name][i] for i in picked]
            report["filters"][name][split] = {
                "examples": len(subset),
                "categories": {label: rates(subset, flags, label) for label in LABELS},
                "overall": overall(subset, flags),
            }

    # One output-window check: the last 400 characters of a completion, every 100 characters.
    stream = " ".join(texts)
    windows = [stream[i : i + service.window_size] for i in range(0, len(stream) - 400, service.window_every)]
    _, samples = await time_calls(service.check_output, windows[:200], 1)
    window = percentiles(samples)
    window["per_token_ms_at_4_chars_per_token"] = round(window["p50_ms"] / (service.window_every / 4), 3)
    report["output_window"] = {
        "size_chars": service.window_size,
        "every_chars": service.window_every,
        **window,
    }

    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"{report['examples']} examples; classifier loaded in {report['classifier_load_s']:.2f} s\n")
    print(f"{'filter':20} {'category':10} {'prec':>5} {'recall':>6} {'fpr':>5} {'benign fpr':>10}")
    for name, entry in report["filters"].items():
        for label, r in entry["categories"].items():
            print(
                f"{name:20} {label:10} {fmt(r['precision']):>5} {fmt(r['recall']):>6} {fmt(r['fpr']):>5}"
                f" {fmt(r['benign_fpr']):>10}"
            )
    columns = f"{'harmful blocked':>16} {'tricky blocked':>15} {'benign blocked':>15}"
    print(f"\n{'filter':20} {'p50 ms':>8} {'p95 ms':>8} {columns}")
    for name, entry in report["filters"].items():
        o, lat = entry["overall"], entry["latency"]
        print(
            f"{name:20} {lat['p50_ms']:8.2f} {lat['p95_ms']:8.2f} {fmt(o['harmful_blocked']):>16}"
            f" {fmt(o['benign_tricky_blocked']):>15} {fmt(o['benign_blocked']):>15}"
        )
    for name, split in [(n, s) for n in ("ensemble", "ensemble@low") for s in ("dev", "holdout")]:
        part = report["filters"][name][split]
        cells = "  ".join(
            f"{label} P={fmt(r['precision'])} R={fmt(r['recall'])}" for label, r in part["categories"].items()
        )
        print(f"\n{name} on {split} ({part['examples']}): {cells}")
        o = part["overall"]
        print(
            f"  harmful blocked {fmt(o['harmful_blocked'])},"
            f" tricky blocked {fmt(o['benign_tricky_blocked'])}, benign blocked {fmt(o['benign_blocked'])}"
        )
    w = report["output_window"]
    print(
        f"\noutput window ({w['size_chars']} chars every {w['every_chars']}): p50 {w['p50_ms']:.2f} ms,"
        f" p95 {w['p95_ms']:.2f} ms, ≈{w['per_token_ms_at_4_chars_per_token']:.3f} ms per token"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="time each text this many times")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "safety_eval.json")
    args = parser.parse_args()
    result = asyncio.run(evaluate(args.repeat))
    print_report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
