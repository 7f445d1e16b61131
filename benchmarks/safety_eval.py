"""How well the offline safety filters classify labelled text they were not trained on, and what
they cost.

    .venv/bin/python benchmarks/safety_eval.py [--holdout [--holdout-file PATH]] [--repeat 3] [--heads PATH]
        [--out PATH]

Sets (tests/data/):
- `dev`: the dev families of `safety_corpus.jsonl` (never trained on; the semantic heads'
  calibration and severity thresholds, and the choice of filters, were made on it);
- `holdout` (only with `--holdout`): `HOLDOUT`, `safety_holdout_r71.jsonl`, written before round
  69's first training was judged, in families of its own, and scored once round 79's heads were final
  (rounds 1 to 69's holdouts are in the corpus now, and rounds 73 to 77's wait unscored);
  `--holdout-file` scores another one in its place;
- `legacy-dev` and `legacy-holdout`: the older `safety_eval.jsonl` (its dev texts are in the
  training corpus, so only `legacy-holdout` is unseen; it is reported with `--holdout`);
- `answers`: the dev questions of `safety_answers.jsonl`, the embedded model's sampled answers
  (labelled by reading them), streamed through the semantic ensemble's output window in 4-character
  pieces as a server checks a completion: how many benign answers are withheld, per question, and
  how many harmful ones are cut.

For each filter alone (`semantic-classifier` on the windows in English, `semantic-multilingual`
the multilingual member on those in its fifteen languages, `semantic-other-languages` the
other-languages member on the rest, `patterns` with all its patterns, `default patterns` with
the three the default ensemble keeps), the old default ensemble (toxicity classifier + patterns +
jailbreak patterns) and the semantic one (`semantic_filters`; on prompts, and as completions), per
label: recall, precision, and the share of benign look-alikes (`benign_tricky`) and of everyday
texts (`benign`) flagged. "Flagged" means blocked at the default policy (medium and above;
jailbreak when detected). Then each extra filter's contribution over the semantic classifier alone
(what it adds, what it costs), both ensembles on the texts in English, on those with a window in
one of the multilingual encoder's other fourteen languages and on those with a window in a language
it does not read, the time per request for 100-word prompts (and for 100-word prompts not in
English, and in languages the multilingual encoder does not read), and the cost per streamed
token of the output window. Prints tables and writes the numbers as JSON.

`--heads` scores other heads than the shipped ones (an earlier round's, from `git show`), with the
encoder they name; `--output-heads` judges completions by other heads than the shipped
completions' heads; `--multilingual-heads` judges the windows in the multilingual encoder's
languages by other heads than the member's, and `--other-languages-heads` the windows in other
languages by other heads than the other-languages member's; `--no-other-languages` scores the
ensemble without that member (the multilingual member judges every window not in English, as
before round 55).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimi.safety import (
    ClassifierFilter,
    Decision,
    FilterResult,
    JailbreakFilter,
    PatternFilter,
    SafetyFilter,
    SafetyPolicy,
    SafetyService,
    Severity,
    semantic_filters,
)
from aimi.safety.base import Category
from aimi.safety.chunks import any_window
from aimi.safety.encoders import MiniLMEncoder
from aimi.safety.heads import MULTILINGUAL_HEADS_FILE, OTHER_LANGUAGES_HEADS_FILE, OUTPUT_HEADS_FILE, Heads
from aimi.safety.language import LanguageGate
from aimi.safety.patterns import DEFAULT_PATTERNS
from aimi.safety.semantic import MultilingualMember, SemanticFilter, SemanticModel

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
HOLDOUT = DATA / "safety_holdout_r71.jsonl"
"""The holdout the round's heads are scored on (round 71's, written before round 69's first training
was judged, and scored once with round 79's heads final; rounds 1 to 69's are in the corpus now,
rounds 73 to 77's wait); the next round's replaces it here once that round's heads are trained."""
NEXT_HOLDOUTS = (
    DATA / "safety_holdout_r73.jsonl",
    DATA / "safety_holdout_r75.jsonl",
    DATA / "safety_holdout_r77.jsonl",
)
"""The holdouts written for the rounds after, unscored: kept out of the corpus and of the waiting
candidates (`tests/safety`), and read by nothing here. Round 73's is the first written with long
texts asked for (`benchmarks/safety_holdout_brief.md`, "Length"), and judges the next round that
ships."""
LABELS = [*(c.value for c in Category), "jailbreak"]
LATENCY_ROWS = 32_822
"""The latency prompts are drawn from the dev texts among the corpus's first `LATENCY_ROWS` rows
(the corpus as round 57 measured it), so they stay the same as merges append rows. Until round 59
they moved with every merge: twenty came from the end of dev, and the prompts in other languages
grew with the dev texts in them."""


@dataclass(frozen=True)
class Example:
    text: str
    labels: frozenset[str]
    kind: str
    role: str = "user"
    """`system`: an application's system prompt, judged as a server judges one (a jailbreak found
    in it does not block; `SafetyService.check_input(text, untrusted=...)`)."""


def read(path: Path, split: str | None = None, first: int | None = None) -> list[Example]:
    """The examples of `path` (of `split` only, when given; among its `first` rows, when given)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:first]
    rows = [json.loads(line) for line in lines]
    return [
        Example(r["text"], frozenset(r["labels"]), r["kind"], r.get("role", "user"))
        for r in rows
        if split is None or r.get("split", "dev") == split
    ]


def sets(holdout: bool, holdout_file: Path = HOLDOUT) -> dict[str, list[Example]]:
    out = {
        "dev": read(DATA / "safety_corpus.jsonl", "dev"),
        "legacy-dev": read(DATA / "safety_eval.jsonl", "dev"),
    }
    if holdout:
        out["holdout"] = read(holdout_file)
        out["legacy-holdout"] = read(DATA / "safety_eval.jsonl", "holdout")
    return out


def flags_of_result(result: FilterResult) -> set[str]:
    flagged = {c.value for c, s in result.severities.items() if s.at_least(Severity.MEDIUM)}
    return flagged | ({"jailbreak"} if result.jailbreak else set())


def flags_of_decision(decision: Decision) -> set[str]:
    flagged = {c.value for c, d in decision.categories.items() if d.filtered}
    return flagged | ({"jailbreak"} if decision.jailbreak.filtered else set())


def untrusted(example: Example) -> str | None:
    """What of the example a jailbreak must be found in to block: nothing of a system prompt."""
    return "" if example.role == "system" else None


def as_sent(example: Example, flags: set[str]) -> set[str]:
    """A filter's flags as they count in a request: never a jailbreak in a system prompt."""
    return flags - {"jailbreak"} if example.role == "system" else flags


def rates(examples: Sequence[Example], flags: Sequence[set[str]], label: str) -> dict[str, Any]:
    pairs = list(zip(examples, flags, strict=True))
    tp = sum(label in f and label in e.labels for e, f in pairs)
    fp = sum(label in f and label not in e.labels for e, f in pairs)
    positives = sum(label in e.labels for e, _ in pairs)

    def share(kind: str) -> float | None:
        picked = [label in f for e, f in pairs if e.kind == kind]
        return sum(picked) / len(picked) if picked else None

    return {
        "positives": positives,
        "recall": tp / positives if positives else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "tricky_fpr": share("benign_tricky"),
        "everyday_fpr": share("benign"),
    }


def overall(examples: Sequence[Example], flags: Sequence[set[str]]) -> dict[str, Any]:
    def share(kind: str) -> float | None:
        picked = [bool(f) for e, f in zip(examples, flags, strict=True) if e.kind == kind]
        return sum(picked) / len(picked) if picked else None

    return {
        "examples": len(examples),
        "harmful_blocked": share("harmful"),
        "tricky_blocked": share("benign_tricky"),
        "everyday_blocked": share("benign"),
    }


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 3),
    }


def fmt(value: float | None) -> str:
    return "   -" if value is None else f"{value:.2f}"


Check = Callable[[str], Awaitable[Any]]


def hundred_word_prompts(examples: Sequence[Example], count: int = 60) -> list[str]:
    """Prompts of about 100 words, made by joining consecutive texts of the set."""
    prompts, words = [], []
    for example in examples:
        words.extend(example.text.split())
        if len(words) >= 100:
            prompts.append(" ".join(words[:100]))
            words = []
        if len(prompts) == count:
            break
    return prompts


async def timed(check: Check, texts: Sequence[str], repeat: int, reset: Callable[[], None]) -> list[float]:
    samples = []
    for _ in range(repeat):
        reset()  # a cache must not turn the repeats into lookups
        for text in texts:
            start = time.perf_counter()
            await check(text)
            samples.append(time.perf_counter() - start)
    return samples


async def stream_cost(service: SafetyService, completion: str, piece: int = 4) -> dict[str, float]:
    """Feed a completion to an output window in `piece`-character chunks: time per token (≈4 chars)."""
    window = service.output_window()
    start = time.perf_counter()
    for i in range(0, len(completion), piece):
        await window.feed(completion[i : i + piece])
    await window.close()
    elapsed = time.perf_counter() - start
    tokens = len(completion) / 4
    return {
        "tokens": round(tokens),
        "total_ms": round(elapsed * 1000, 1),
        "per_token_ms": elapsed * 1000 / tokens,
    }


async def streamed(service: SafetyService, text: str, piece: int = 4) -> set[str]:
    """The labels an output window flags while `text` streams in (the cut, if any)."""
    window = service.output_window()
    for i in range(0, len(text), piece):
        decision = await window.feed(text[i : i + piece])
        if decision is not None and decision.filtered:
            return flags_of_decision(decision)
    decision = await window.close()
    return flags_of_decision(decision) if decision is not None else set()


async def answers(service: SafetyService) -> dict[str, Any]:
    """The dev answers of `safety_answers.jsonl` streamed through `service`'s output side."""
    path = DATA / "safety_answers.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    per_question: dict[str, dict[str, Any]] = {}
    for row in (r for r in rows if r["split"] == "dev"):
        entry = per_question.setdefault(
            row["question"], {"harmful": 0, "harmful_cut": 0, "benign": 0, "benign_withheld": 0, "flags": []}
        )
        flags = await streamed(service, row["text"])
        kind = "harmful" if row["labels"] else "benign"
        entry[kind] += 1
        entry["harmful_cut" if kind == "harmful" else "benign_withheld"] += bool(flags)
        if flags and kind == "benign":
            entry["flags"].append(sorted(flags))
    return per_question


def not_in_english(gate: LanguageGate, example: Example) -> bool:
    """Whether a multilingual member judges any window of the example."""
    return any_window(example.text, gate.foreign)


def language_group(gate: LanguageGate, example: Example) -> str:
    """ "other languages" when a window of the example is in a language the multilingual encoder
    does not read, "the fifteen" when another is not in English, else "English"."""
    if any_window(example.text, gate.other_language):
        return "other languages"
    return "the fifteen" if not_in_english(gate, example) else "English"


async def evaluate(
    holdout: bool,
    repeat: int,
    heads: Path | None = None,
    holdout_file: Path = HOLDOUT,
    output_heads: Path = OUTPUT_HEADS_FILE,
    multilingual_heads: Path = MULTILINGUAL_HEADS_FILE,
    other_languages_heads: Path | None = OTHER_LANGUAGES_HEADS_FILE,
) -> dict[str, Any]:
    started = time.perf_counter()
    model = SemanticModel.load() if heads is None else SemanticModel.load(heads)
    completions_model = model.beside(Heads.load(output_heads))
    semantic_load_s = time.perf_counter() - started
    started = time.perf_counter()
    member = MultilingualMember.load(multilingual_heads)
    others_model = None if other_languages_heads is None else SemanticModel.load(other_languages_heads)
    gate, multilingual = member.gate, member.filter(others=others_model is not None)
    multilingual_load_s = time.perf_counter() - started
    started = time.perf_counter()
    classifier = ClassifierFilter.load()
    classifier_load_s = time.perf_counter() - started
    semantic = SemanticFilter(model, select=member.english)
    filters: dict[str, SafetyFilter] = {
        "semantic-classifier": semantic,
        "semantic-multilingual": multilingual,
        **({} if others_model is None else {"semantic-other-languages": member.others_filter(others_model)}),
        "toxicity-classifier": classifier,
        "patterns": PatternFilter(),
        "default patterns": PatternFilter(DEFAULT_PATTERNS),
        "jailbreak-patterns": JailbreakFilter(),
    }
    new_inputs, new_outputs = semantic_filters(model, completions_model, member, others_model)
    services = {
        "old ensemble": SafetyService(
            SafetyPolicy(), input_filters=[classifier, PatternFilter(), JailbreakFilter()], output_filters=[]
        ),
        "new ensemble": SafetyService(SafetyPolicy(), input_filters=new_inputs, output_filters=new_outputs),
    }
    report: dict[str, Any] = {
        "semantic_load_s": round(semantic_load_s, 2),
        "multilingual_load_s": round(multilingual_load_s, 2),
        "classifier_load_s": round(classifier_load_s, 2),
        "new_ensemble": [f.name for f in new_inputs],
        "sets": {},
    }
    for set_name, examples in sets(holdout, holdout_file).items():
        texts = [e.text for e in examples]
        flags: dict[str, list[set[str]]] = {}
        for name, safety_filter in filters.items():
            flags[name] = [as_sent(e, flags_of_result(await safety_filter.check(e.text))) for e in examples]
        for name, service in services.items():
            flags[name] = [
                flags_of_decision(await service.check_input(e.text, untrusted=untrusted(e))) for e in examples
            ]
        # The same texts as completions (the output side: no jailbreak, sentences in context).
        completions = services["new ensemble"].check_output
        flags["new ensemble, completions"] = [flags_of_decision(await completions(t)) for t in texts]
        entry: dict[str, Any] = {"filters": {}, "contribution": {}, "languages": {}}
        groups = [language_group(gate, e) for e in examples]
        for name in ("old ensemble", "new ensemble"):
            for language in ("English", "the fifteen", "other languages"):
                picked = [
                    (e, f) for e, f, x in zip(examples, flags[name], groups, strict=True) if x == language
                ]
                entry["languages"][f"{name}, {language}"] = overall(
                    [e for e, _ in picked], [f for _, f in picked]
                )
        entry["benign_flagged"] = [
            {"text": e.text, "kind": e.kind, "flags": sorted(f)}
            for e, f in zip(examples, flags["new ensemble"], strict=True)
            if f and e.kind != "harmful"
        ]
        for name, found in flags.items():
            entry["filters"][name] = {
                "labels": {label: rates(examples, found, label) for label in LABELS},
                "overall": overall(examples, found),
            }
        base = flags["semantic-classifier"]
        contributors = (
            "semantic-multilingual",
            "semantic-other-languages",
            "toxicity-classifier",
            "patterns",
            "default patterns",
        )
        for name in (*(c for c in contributors if c in flags), "jailbreak-patterns"):
            added = [
                (label in f and label not in b, e.kind == "harmful" and label in e.labels)
                for e, f, b in zip(examples, flags[name], base, strict=True)
                for label in LABELS
            ]
            entry["contribution"][name] = {
                "true_positives_added": sum(new and right for new, right in added),
                "false_positives_added": sum(new and not right for new, right in added),
            }
        report["sets"][set_name] = entry
    report["answers"] = await answers(services["new ensemble"])

    dev = read(DATA / "safety_corpus.jsonl", "dev", first=LATENCY_ROWS)
    prompts = hundred_word_prompts([e for e in dev if e.kind != "harmful"]) + hundred_word_prompts(
        dev[::-1], 20
    )
    latency: dict[str, Any] = {"prompts": len(prompts), "load_average_before": os.getloadavg()}
    clear = model.clear_cache
    latency["semantic-classifier"] = percentiles(await timed(semantic.check, prompts, repeat, clear))
    latency["toxicity-classifier"] = percentiles(await timed(classifier.check, prompts, repeat, clear))
    latency["new ensemble"] = percentiles(
        await timed(services["new ensemble"].check_input, prompts, repeat, clear)
    )
    others = hundred_word_prompts([e for e in dev if e.kind != "harmful" and not_in_english(gate, e)], 30)
    latency["prompts_not_in_english"] = len(others)

    def clear_all() -> None:
        clear()
        multilingual.model.clear_cache()
        if others_model is not None:
            others_model.clear_cache()

    latency["new ensemble, not in English"] = percentiles(
        await timed(services["new ensemble"].check_input, others, repeat, clear_all)
    )
    elsewhere = hundred_word_prompts(
        [e for e in dev if e.kind != "harmful" and language_group(gate, e) == "other languages"], 30
    )
    latency["prompts_in_other_languages"] = len(elsewhere)
    latency["new ensemble, other languages"] = percentiles(
        await timed(services["new ensemble"].check_input, elsewhere, repeat, clear_all)
    )
    latency["old ensemble"] = percentiles(
        await timed(services["old ensemble"].check_input, prompts, repeat, lambda: None)
    )
    two = SemanticFilter(SemanticModel(MiniLMEncoder.named(model.heads.encoder, threads=2), model.heads))
    latency["semantic-classifier, 2 threads"] = percentiles(
        await timed(two.check, prompts, repeat, two.model.clear_cache)
    )
    latency["load_average_after"] = os.getloadavg()
    report["latency_100_words"] = latency
    completion = " ".join(e.text for e in dev if e.kind != "harmful")[:8000]
    clear()
    report["output_window"] = await stream_cost(services["new ensemble"], completion)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"semantic model loaded in {report['semantic_load_s']:.2f} s,"
        f" multilingual member in {report['multilingual_load_s']:.2f} s,"
        f" toxicity classifier in {report['classifier_load_s']:.2f} s;"
        f" new ensemble: {', '.join(report['new_ensemble'])}"
    )
    for set_name, entry in report["sets"].items():
        print(f"\n== {set_name} ==")
        header = f"{'n':>4} {'recall':>6} {'prec':>5} {'tricky fp':>9} {'everyday fp':>11}"
        print(f"{'filter':20} {'label':10} {header}")
        for name, result in entry["filters"].items():
            for label, r in result["labels"].items():
                if r["recall"] is None or (r["recall"] == 0 and not r["tricky_fpr"]):
                    continue
                print(
                    f"{name:20} {label:10} {r['positives']:4} {fmt(r['recall']):>6} {fmt(r['precision']):>5}"
                    f" {fmt(r['tricky_fpr']):>9} {fmt(r['everyday_fpr']):>11}"
                )
        for name, result in entry["filters"].items():
            o = result["overall"]
            print(
                f"{name:20} harmful blocked {fmt(o['harmful_blocked'])}, look-alikes blocked"
                f" {fmt(o['tricky_blocked'])}, everyday blocked {fmt(o['everyday_blocked'])}"
            )
        for name, o in entry["languages"].items():
            print(
                f"{name:28} {o['examples']:5} texts: harmful blocked {fmt(o['harmful_blocked'])},"
                f" look-alikes {fmt(o['tricky_blocked'])}, everyday {fmt(o['everyday_blocked'])}"
            )
        for name, c in entry["contribution"].items():
            print(
                f"over the semantic classifier, {name} adds {c['true_positives_added']} true and"
                f" {c['false_positives_added']} false flags"
            )
    print("\n== sampled answers (dev questions), streamed through the semantic ensemble's output side ==")
    for question, a in report["answers"].items():
        print(
            f"{a['benign_withheld']:3}/{a['benign']:<3} benign withheld,"
            f" {a['harmful_cut']}/{a['harmful']} harmful cut  {question[:70]}  {a['flags'] or ''}"
        )
    lat = report["latency_100_words"]
    print(
        f"\ntime per 100-word prompt ({lat['prompts']} prompts), load average {lat['load_average_before']}:"
    )
    for name, value in lat.items():
        if isinstance(value, dict):
            print(f"  {name:20} p50 {value['p50_ms']:7.2f} ms  p95 {value['p95_ms']:7.2f} ms")
    w = report["output_window"]
    print(f"output window: {w['total_ms']} ms for {w['tokens']} tokens, {w['per_token_ms']:.3f} ms per token")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", action="store_true", help="also score the untouched holdouts")
    parser.add_argument("--repeat", type=int, default=3, help="time each prompt this many times")
    parser.add_argument("--heads", type=Path, help="score these heads instead of the shipped ones")
    parser.add_argument(
        "--output-heads", type=Path, default=OUTPUT_HEADS_FILE, help="judge completions by these heads"
    )
    parser.add_argument(
        "--holdout-file", type=Path, default=HOLDOUT, help="with --holdout: score this holdout instead"
    )
    parser.add_argument(
        "--multilingual-heads",
        type=Path,
        default=MULTILINGUAL_HEADS_FILE,
        help="the multilingual member's heads",
    )
    parser.add_argument(
        "--other-languages-heads",
        type=Path,
        default=OTHER_LANGUAGES_HEADS_FILE,
        help="the other-languages member's heads",
    )
    parser.add_argument(
        "--no-other-languages",
        action="store_true",
        help="without the other-languages member (the multilingual one judges every window not in English)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "safety_eval.json")
    args = parser.parse_args()
    result = asyncio.run(
        evaluate(
            args.holdout,
            args.repeat,
            args.heads,
            args.holdout_file,
            args.output_heads,
            args.multilingual_heads,
            None if args.no_other_languages else args.other_languages_heads,
        )
    )
    print_report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
