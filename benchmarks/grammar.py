"""What a grammar costs per generated token: JSON mode, a JSON schema and a forced tool call, each
against unconstrained decoding of the same length in the same run, on the embedded engine.

    .venv/bin/python benchmarks/grammar.py [--rounds 3] [--out benchmarks/results]

Per-token time is measured from the first token to the last (prefill excluded), so the ratio is the
grammar's cost on decoding. Prints a table and writes benchmarks/results/grammar-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from aimi.engines.base import Finish, GenerationRequest, Grammar, Sampling, Token
from aimi.engines.llamacpp import LlamaCppEngine
from aimi.engines.llamacpp.embedded import embedded_model_path
from aimi.inference.chat import Message, ToolSpec
from aimi.inference.prompts import ChatTemplateRenderer
from aimi.inference.schemas import json_object_gbnf, schema_to_gbnf
from aimi.inference.tools import TaggedCalls

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
        "hobbies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "city", "hobbies"],
}
FLIGHT = ToolSpec(
    "get_flight_info",
    "Returns the next flight between two cities.",
    {
        "type": "object",
        "properties": {"origin_city": {"type": "string"}, "destination_city": {"type": "string"}},
        "required": ["origin_city", "destination_city"],
    },
)


async def decode(
    engine: LlamaCppEngine, prompt: list[int], grammar: Grammar | None, max_tokens: int
) -> tuple[int, float]:
    """(tokens, seconds from the first token to the last)."""
    sampling = Sampling(temperature=0, ignore_eos=grammar is None)
    request = GenerationRequest(prompt=prompt, sampling=sampling, max_tokens=max_tokens, grammar=grammar)
    first = last = 0.0
    count = 0
    async for event in engine.generate(request):
        if isinstance(event, Token):
            last = time.perf_counter()
            first = first or last
            count += 1
        elif isinstance(event, Finish):
            break
    return count, last - first


async def measure(rounds: int) -> dict[str, Any]:
    engine = LlamaCppEngine(embedded_model_path(), context_size=2048, slots=1)
    await engine.start()
    renderer = ChatTemplateRenderer(engine.info.chat_template or "", engine.info, engine.tokenize)
    ask = (
        Message("system", "You reply only with JSON."),
        Message("user", "Describe a fictional person in detail."),
    )
    call = (Message("user", "When is the next flight from Miami to Seattle?"),)
    cases = {
        "json_object": (renderer.render(ask), Grammar(json_object_gbnf())),
        "json_schema": (renderer.render(ask), Grammar(schema_to_gbnf(PERSON))),
        "tool_call": (
            renderer.render(call, (FLIGHT,)),
            TaggedCalls().grammar((FLIGHT,), parallel=True, lazy=False),
        ),
    }
    results: dict[str, Any] = {}
    for name, (prompt, grammar) in cases.items():
        constrained, free = [], []
        for _ in range(rounds):
            tokens, seconds = await decode(engine, prompt, grammar, 160)
            constrained.append(seconds / max(1, tokens - 1))
            tokens_free, seconds_free = await decode(engine, prompt, None, tokens)  # same length, no grammar
            free.append(seconds_free / max(1, tokens_free - 1))
        ms_c, ms_f = statistics.median(constrained) * 1000, statistics.median(free) * 1000
        results[name] = {
            "tokens": tokens,
            "ms_per_token_constrained": round(ms_c, 3),
            "ms_per_token_unconstrained": round(ms_f, 3),
            "ratio": round(ms_c / ms_f, 3),
        }
    await engine.stop()
    return {
        "model": engine.info.name,
        "rounds": rounds,
        "cases": results,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def report(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "grammar-latest.json").write_text(json.dumps(result, indent=2))
    print(f"{'case':12} {'tokens':>6} {'ms/tok grammar':>15} {'ms/tok free':>12} {'ratio':>6}")
    for name, r in result["cases"].items():
        grammar_ms, free_ms = r["ms_per_token_constrained"], r["ms_per_token_unconstrained"]
        print(f"{name:12} {r['tokens']:>6} {grammar_ms:>15.2f} {free_ms:>12.2f} {r['ratio']:>6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    report(asyncio.run(measure(args.rounds)), args.out)
