"""What jump-forward saves: decode steps per output token and tokens/s of schema-constrained answers
and tool calls, with jump-forward on, off, and against the same answers unconstrained, on the
embedded engine (1 stream and 8 streams).

    .venv/bin/python benchmarks/jump_forward.py [--rounds 3] [--out benchmarks/results]

Each round runs every case in the three modes one after the other, in an order that alternates
between rounds. The unconstrained answer is the same prompt without a grammar, cut to the same
number of tokens as the constrained one (`ignore_eos`), so both decode as many tokens. Steps per
token is counted by the engine (`decode_steps`, less one for the prompts, over the tokens of the
longest answer: with 8 streams a step decodes a token of each) and does not depend on the machine's
load; tokens/s does, so it is the median over the rounds. Detection time is what
`Sampler.jump` took, per decode step. Prints a table and writes
benchmarks/results/jump-forward-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aimi.engines.base import Finish, GenerationRequest, Grammar, Sampling, Token
from aimi.engines.llamacpp import LlamaCppEngine
from aimi.engines.llamacpp.embedded import embedded_model_path
from aimi.engines.llamacpp.sampler import Sampler
from aimi.inference.chat import Message, ToolSpec
from aimi.inference.prompts import ChatTemplateRenderer
from aimi.inference.schemas import json_object_gbnf, schema_to_gbnf
from aimi.inference.tools import TaggedCalls

# An extraction form: the shape structured output is mostly used for (many fixed keys, short values).
CONTACT = {
    "type": "object",
    "properties": {
        "first_name": {"type": "string"},
        "last_name": {"type": "string"},
        "age": {"type": "integer"},
        "email": {"type": "string"},
        "city": {"type": "string"},
        "country": {"type": "string"},
        "occupation": {"type": "string"},
        "employment_status": {"enum": ["employed", "self-employed", "unemployed", "retired"]},
        "is_customer": {"type": "boolean"},
    },
    "required": [
        "first_name", "last_name", "age", "email", "city", "country", "occupation",
        "employment_status", "is_customer",
    ],
}  # fmt: skip
FLIGHT = ToolSpec(
    "get_flight_info",
    "Returns the next flight between two cities.",
    {
        "type": "object",
        "properties": {"origin_city": {"type": "string"}, "destination_city": {"type": "string"}},
        "required": ["origin_city", "destination_city"],
    },
)
PEOPLE = ["a nurse in Lyon", "a retired farmer in Iowa", "a student in Osaka", "a baker in Naples",
          "a pilot in Dubai", "an engineer in Oslo", "a teacher in Lima", "a painter in Prague"]  # fmt: skip
ROUTES = [("Miami", "Seattle"), ("Paris", "Rome"), ("Tokyo", "Sydney"), ("Boston", "Denver"),
          ("Madrid", "Berlin"), ("Cairo", "Nairobi"), ("Toronto", "Chicago"), ("Lisbon", "Oslo")]  # fmt: skip
MODES = ("jump", "no-jump", "unconstrained")


def cases(renderer: ChatTemplateRenderer) -> dict[str, list[tuple[list[int], Grammar]]]:
    """Per case, 8 prompts (one per stream) with their grammar."""
    system = Message("system", "You reply only with JSON.")
    return {
        "json_schema": [
            (
                renderer.render((system, Message("user", f"Make up a contact record for {who}."))),
                Grammar(schema_to_gbnf(CONTACT)),
            )
            for who in PEOPLE
        ],
        "tool_call": [
            (
                renderer.render((Message("user", f"When is the next flight from {a} to {b}?"),), (FLIGHT,)),
                TaggedCalls().grammar((FLIGHT,), parallel=True, lazy=False),
            )
            for a, b in ROUTES
        ],
        "json_object": [
            (
                renderer.render((system, Message("user", f"Describe {who} as a JSON object."))),
                Grammar(json_object_gbnf()),
            )
            for who in PEOPLE
        ],
    }


@contextmanager
def timed_jumps() -> Iterator[list[float]]:
    """Seconds spent in each `Sampler.jump` call while inside."""
    spent: list[float] = []
    original: Callable[..., Any] = Sampler.jump

    def jump(self: Sampler, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    Sampler.jump = jump  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        Sampler.jump = original  # type: ignore[method-assign]


async def one(engine: LlamaCppEngine, request: GenerationRequest) -> tuple[int, float, float]:
    """(tokens, time of the first token, time of the last)."""
    first = last = 0.0
    count = 0
    async for event in engine.generate(request):
        if isinstance(event, Token):
            last = time.perf_counter()
            first = first or last
            count += 1
        elif isinstance(event, Finish):
            count = event.completion_tokens
            break
    return count, first, last


async def batch(
    engine: LlamaCppEngine, requests: list[GenerationRequest]
) -> tuple[list[int], float, int, float]:
    """Run the requests together: (tokens of each, seconds from the first token to the last,
    decode steps, seconds spent detecting forced text)."""
    before = engine.stats()
    with timed_jumps() as spent:
        results = await asyncio.gather(*(one(engine, r) for r in requests))
    after = engine.stats()
    first = min(r[1] for r in results)
    last = max(r[2] for r in results)
    steps = after.decode_steps - before.decode_steps
    return [r[0] for r in results], last - first, steps, sum(spent)


async def measure(rounds: int, max_tokens: int) -> dict[str, Any]:
    path = embedded_model_path()
    engines = {
        "jump": LlamaCppEngine(path, context_size=2048, slots=8, jump_forward=True),
        "no-jump": LlamaCppEngine(path, context_size=2048, slots=8, jump_forward=False),
    }
    for engine in engines.values():
        await engine.start()
    engines["unconstrained"] = engines["no-jump"]
    renderer = ChatTemplateRenderer(
        engines["jump"].info.chat_template or "", engines["jump"].info, engines["jump"].tokenize
    )
    results: dict[str, Any] = {}
    for engine in (engines["jump"], engines["no-jump"]):  # first steps of a context run slow
        warm = [GenerationRequest(prompt=p, sampling=Sampling(temperature=0), max_tokens=32, grammar=g)
                for p, g in cases(renderer)["tool_call"]]  # fmt: skip
        await batch(engine, warm)
    for name, prompts in cases(renderer).items():
        for streams in (1, 8):
            runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
            for round_ in range(rounds):
                lengths: list[int] = []
                order = MODES if round_ % 2 == 0 else ("no-jump", "jump", "unconstrained")
                for mode in order:
                    engine = engines[mode]
                    if mode == "unconstrained":
                        free = Sampling(temperature=0, ignore_eos=True)
                        requests = [
                            GenerationRequest(prompt=p, sampling=free, max_tokens=n)
                            for (p, _), n in zip(prompts[:streams], lengths, strict=True)
                        ]
                    else:
                        requests = [
                            GenerationRequest(
                                prompt=p, sampling=Sampling(temperature=0), max_tokens=max_tokens, grammar=g
                            )
                            for p, g in prompts[:streams]
                        ]
                    tokens, seconds, steps, detect = await batch(engine, requests)
                    if mode == "no-jump" or (mode == "jump" and not lengths):
                        lengths = tokens  # the unconstrained run decodes as many tokens
                    runs[mode].append(
                        {
                            "tokens": sum(tokens),
                            # the steps it took, less the prompts', per token of the longest answer
                            "steps_per_token": (steps - 1) / max(tokens),
                            "tokens_per_s": (sum(tokens) - streams) / seconds if seconds else 0.0,
                            "detect_ms_per_step": detect * 1000 / max(1, steps - 1),
                        }
                    )
            results[f"{name}/{streams}"] = {
                mode: {
                    "tokens": runs[mode][-1]["tokens"],
                    "steps_per_token": round(statistics.median(r["steps_per_token"] for r in runs[mode]), 3),
                    "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in runs[mode]), 1),
                    "tokens_per_s_runs": [round(r["tokens_per_s"], 1) for r in runs[mode]],
                    "detect_ms_per_step": round(
                        statistics.median(r["detect_ms_per_step"] for r in runs[mode]), 3
                    ),
                }
                for mode in MODES
            }
    for engine in (engines["jump"], engines["no-jump"]):
        await engine.stop()
    return {
        "model": engines["jump"].info.name,
        "rounds": rounds,
        "cases": results,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def report(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "jump-forward-latest.json").write_text(json.dumps(result, indent=2))
    print(
        f"{'case/streams':16} {'mode':14} {'tokens':>6} {'steps/tok':>9} {'tok/s':>7} {'detect ms/step':>14}"
    )
    for name, modes in result["cases"].items():
        for mode, r in modes.items():
            print(
                f"{name:16} {mode:14} {r['tokens']:>6} {r['steps_per_token']:>9.3f} "
                f"{r['tokens_per_s']:>7.1f} {r['detect_ms_per_step']:>14.3f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    report(asyncio.run(measure(args.rounds, args.max_tokens)), args.out)
