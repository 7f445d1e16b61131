"""Serving benchmark: `aimi serve` against llama.cpp's own llama-server on the same GGUF.

Both servers get the same model, thread count and slot count, and are run one after the other (never
both at once) under the same streaming workloads over loopback: 1, 4, 8 and 16 concurrent clients,
each generating exactly `--max-tokens` tokens (temperature 0, `ignore_eos`); a shared-prefix workload
(one ~530-token system prompt, different short questions); multi-turn conversations with 1.5 users per
slot (growing histories, answers fed back, temperature 0.7); and long prompts (~1,200-token documents,
short answers). `llama-bench` on the same GGUF gives the single-stream decode ceiling of the machine.
`--gateway` also measures what aimi adds in front of llama-server (an upstream-URL deployment).

    .venv/bin/python benchmarks/serving.py [--quick] [--gateway] [--out benchmarks/results]

Writes `serving-<timestamp>.json` / `.png` and `serving-latest.json` / `.png` under `--out` and
prints a table of aimi / llama-server ratios. See benchmarks/README.md."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = REPO / "benchmarks" / "build-llama-server.sh"
LOOPBACK = "127.0.0.1"
SERVERS = ("llama-server", "aimi")
DEPLOYMENT = "bench"


PROMPTS = ("short", "shared-prefix", "multi-turn", "long-prompt")


@dataclass(frozen=True)
class Workload:
    """`streams` clients at once, each sending `requests_per_stream` requests one after the other.

    `prompts` says what they send: `short` distinct prompts; `shared-prefix`, one long system prompt
    then different questions; `multi-turn`, one conversation per client whose requests are its turns,
    each answer fed back into the next prompt; `long-prompt`, a distinct ~1,200-token document each."""

    name: str
    streams: int
    requests_per_stream: int
    prompts: str = "short"
    answer_tokens: tuple[int, int] | None = None
    """Each reply's length, drawn per request from this range (both ends included; the same lengths on
    both servers); None: `--max-tokens` for every request."""
    temperature: float = 0.0
    top_p: float | None = None
    users_per_slot: float | None = None
    """When set, `streams` is this many times the slot count (see `for_slots`)."""

    @property
    def requests(self) -> int:
        return self.streams * self.requests_per_stream

    def for_slots(self, parallel: int) -> Workload:
        if self.users_per_slot is None:
            return self
        return replace(self, streams=max(1, math.ceil(self.users_per_slot * parallel)))

    def reply_tokens(self, index: int, *, default: int, seed: int) -> int:
        """How many tokens the `index`-th request of the run asks for: fixed by the seed."""
        if self.answer_tokens is None:
            return default
        return random.Random(f"{seed}:{self.name}:{index}").randint(*self.answer_tokens)


# Multi-turn conversations: 1.5 users per slot, so a returning user's slot has usually gone to someone
# else; sampled as a chat product would (temperature 0.7, top_p 0.9). Long prompts: prefill-bound.
MULTI_TURN = Workload(
    "multi-turn", 12, 3, "multi-turn", (48, 160), temperature=0.7, top_p=0.9, users_per_slot=1.5
)
LONG_PROMPT = Workload("long-prompt", 8, 3, "long-prompt", (48, 64))
# The cost of sampling: 8 streams as `streams-8`, drawn at temperature 0.7 with top_p 0.9.
SAMPLED = Workload("streams-8-sampled", 8, 3, temperature=0.7, top_p=0.9)

FULL = (
    Workload("streams-1", 1, 4),
    Workload("streams-4", 4, 3),
    Workload("streams-8", 8, 3),
    Workload("streams-16", 16, 2),
    SAMPLED,
    Workload("shared-prefix-8", 8, 3, "shared-prefix"),
    MULTI_TURN,
    LONG_PROMPT,
)
QUICK = (
    Workload("streams-1", 1, 2),
    Workload("streams-8", 8, 1),
    Workload("shared-prefix-8", 8, 2, "shared-prefix"),
    replace(MULTI_TURN, requests_per_stream=2),
    replace(LONG_PROMPT, requests_per_stream=1),
)

# -- prompts -------------------------------------------------------------------------------------

_TASKS = (
    "Write a short story about {}.",
    "Explain {} to a ten-year-old.",
    "Give me five interesting facts about {}.",
    "Write a poem about {}.",
    "Write a short blog post about {}.",
    "Write a letter to a friend about {}.",
)
_TOPICS = (
    "a lighthouse keeper",
    "the water cycle",
    "a lost umbrella",
    "learning to ride a bicycle",
    "a robot gardener",
    "volcanoes",
    "a rainy market day",
    "the first day at a new job",
    "honeybees",
    "a train journey through the mountains",
    "saving money",
    "a friendly dragon",
    "photosynthesis",
    "a chess tournament",
    "the history of bread",
    "a city at night",
    "black holes",
    "an old library",
    "planting tomatoes",
    "a sailing trip",
)

# About 530 tokens with SmolLM2's tokenizer (the result JSON records each request's prompt size).
SYSTEM_PROMPT = """\
You are Nimbus, the customer support assistant of Nimbus Home, a company that makes the Nimbus \
smart thermostat, the Nimbus room sensor and the Nimbus mobile app. Answer questions from \
customers politely, briefly and accurately. Follow these rules in every answer.

1. Products. The Nimbus thermostat (models T1 and T2) controls heating and cooling systems with 24 \
V wiring. The T2 adds a humidity sensor, a larger colour screen and support for heat pumps with \
auxiliary heat. The room sensor measures temperature and occupancy and runs for two years on one \
CR2477 battery. The app works on iOS 16 and Android 11 or later.
2. Installation. Always remind them to switch off power to the heating system at the breaker \
before removing the old thermostat. If the old thermostat has thick wires labelled 120 V or 240 V, \
it is a line-voltage system: the Nimbus thermostat is not compatible, and they should not install \
it. If there is no C (common) wire, the included power adapter must be used.
3. Accounts. Customers sign in with an email address. Passwords can be reset from the sign-in \
page. Never ask for a password, a full card number or a security code. A home can be shared with \
up to ten people from Settings, Home members.
4. Troubleshooting. If the screen is blank, check the breaker and the C wire. If the app shows the \
thermostat as offline, restart the home router, then hold the thermostat ring for ten seconds to \
restart it. If the heating runs all the time, check that the wires in the W1 and Y1 terminals are \
not swapped. Error E4 means the thermostat lost power for a moment; error E7 means the room sensor \
battery is low.
5. Warranty and returns. Every product has a two-year limited warranty. Customers may return a \
product within 60 days of delivery for a full refund; the return label is free. Warranty claims \
need the serial number, which is on the back plate and in the app under Settings, Device info.
6. Escalation. For gas smells, burning smells or sparks, tell the customer to leave the building \
and call the emergency number of their gas or electricity supplier first. For anything you cannot \
answer from these rules, offer to open a ticket with a human agent, who replies within one \
business day.

Use numbered steps for procedures and never invent features, prices or dates."""

_QUESTIONS = (
    "How do I install the thermostat myself?",
    "My thermostat shows error E4. What does that mean?",
    "Can I return the room sensor if I do not like it?",
    "How long does the room sensor battery last?",
    "The app says my thermostat is offline. What should I do?",
    "Does the T1 work with a heat pump?",
    "How do I share my home with my partner?",
    "My heating runs all the time. How can I fix it?",
    "What is the difference between the T1 and the T2?",
    "Where do I find the serial number of my thermostat?",
    "I have no C wire. Can I still use the thermostat?",
    "How does eco mode save energy?",
    "I forgot my password. How do I get back into my account?",
    "When do the monthly energy reports arrive?",
    "My old thermostat has thick wires marked 240 V. Can I replace it?",
    "Which phones does the Nimbus app support?",
)
_OPENERS = ("", "Hi! ")


def stream_prompt(index: int) -> list[dict[str, str]]:
    """The `index`-th short prompt of a run; every index gives a different one."""
    n = len(_TASKS) * len(_TOPICS)
    text = _TASKS[index % len(_TASKS)].format(_TOPICS[(index // len(_TASKS)) % len(_TOPICS)])
    if index >= n:
        text += f" Make it version {index // n + 1}."
    return [{"role": "user", "content": text}]


def shared_prefix_prompt(index: int) -> list[dict[str, str]]:
    """The long shared system prompt, then the `index`-th customer question."""
    n = len(_QUESTIONS) * len(_OPENERS)
    question = _OPENERS[(index // len(_QUESTIONS)) % len(_OPENERS)] + _QUESTIONS[index % len(_QUESTIONS)]
    if index >= n:
        question += f" (asking again, #{index // n + 1})"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


# Sentences for conversation histories and documents: made up from these parts by a seeded generator, so
# every user and every document has text of its own, the same on every run, with no download.
_SUBJECTS = (
    "The team", "My neighbour", "The old map", "A small bakery", "The city council", "Our garden",
    "The museum guide", "The new bridge", "A curious student", "The weather report", "My grandmother",
    "The night train", "A local farmer", "The school choir", "Our landlord", "The harbour master",
    "A young engineer", "The village doctor", "The football club", "The radio host",
)  # fmt: skip
_VERBS = (
    "described", "changed", "explained", "improved", "questioned", "celebrated", "measured", "repaired",
    "photographed", "planned", "compared", "forgot about", "wrote a song about", "argued about",
    "studied", "painted", "counted", "cleaned", "sold", "borrowed",
)  # fmt: skip
_TAILS = (
    "before the winter came", "with great patience", "for the third time this year",
    "after a long discussion", "without telling anyone", "in the early morning", "on a rainy afternoon",
    "while the children watched", "to everyone's surprise", "as the budget allowed",
    "under a bright full moon", "despite the noise outside", "with help from two volunteers",
    "just before the holidays", "in less than an hour", "for a reason nobody remembers",
)  # fmt: skip
_FOLLOW_UPS = (
    "Can you say more about that?",
    "What would you do differently about {}?",
    "Summarize what we said so far in a few sentences.",
    "Give me three more ideas about {}.",
    "Which part of this matters most, and why?",
    "Explain it again, more simply this time.",
    "What could go wrong with {}?",
    "Write a short note I could send to a friend about {}.",
)


def _sentences(rng: random.Random, words: int) -> str:
    """Made-up sentences of about `words` words in all."""
    out: list[str] = []
    count = 0
    while count < words:
        topic = rng.choice(_TOPICS)
        sentence = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {topic} {rng.choice(_TAILS)}."
        out.append(sentence)
        count += len(sentence.split())
    return " ".join(out)


class Conversation:
    """One user of the multi-turn workload: earlier turns (`history_words` words of made-up chat), then
    a new question per turn, each answer appended, so a turn's prompt is the last prompt plus its answer
    plus the next question."""

    def __init__(self, index: int, *, history_words: int, seed: int) -> None:
        self.rng = random.Random(f"{seed}:conversation:{index}")
        self.topic = _TOPICS[index % len(_TOPICS)]
        opener = f"Hello, this is conversation {index + 1}. Let us talk about {self.topic}. "
        self.messages: list[dict[str, str]] = []
        written = 0
        while written < history_words:
            # Exchanges of 45-120 words, the last one cut to what is left of the budget.
            left = history_words - written
            asked = min(self.rng.randint(15, 40), max(left // 3, 5))
            user = (opener if not self.messages else "") + _sentences(self.rng, asked)
            answer = _sentences(self.rng, min(self.rng.randint(30, 80), max(left - asked, 10)))
            self.messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
            written += len(user.split()) + len(answer.split())

    def ask(self) -> list[dict[str, str]]:
        """The next turn's prompt."""
        question = self.rng.choice(_FOLLOW_UPS).format(self.topic)
        self.messages.append({"role": "user", "content": question})
        return list(self.messages)

    def answered(self, text: str) -> None:
        # A failed turn still gets an answer, so the conversation goes on with the same shape.
        self.messages.append({"role": "assistant", "content": text or "(no answer)"})


def conversations(first: int, users: int, *, seed: int) -> list[Conversation]:
    """`users` conversations whose histories are spread evenly over 100-600 words, in a seeded order."""
    words = [100 + 500 * k // max(users - 1, 1) for k in range(users)]
    random.Random(f"{seed}:history-lengths").shuffle(words)
    return [Conversation(first + u, history_words=words[u], seed=seed) for u in range(users)]


# About 1,200 tokens with SmolLM2's tokenizer (the result JSON records each request's prompt size).
_DOCUMENT_WORDS = 1000


def long_prompt(index: int, *, seed: int) -> list[dict[str, str]]:
    """The `index`-th document of a run, ~1,200 tokens, each different, and a short task about it."""
    rng = random.Random(f"{seed}:document:{index}")
    topic = _TOPICS[index % len(_TOPICS)]
    paragraphs = [_sentences(rng, 100) for _ in range(_DOCUMENT_WORDS // 100)]
    document = f"Report {index + 1}: notes on {topic}.\n\n" + "\n\n".join(paragraphs)
    task = rng.choice(("Summarize", "List the three main points of", "Give a title to"))
    return [{"role": "user", "content": f"{document}\n\n{task} the report above."}]


# -- one streamed request --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a server's OpenAI-compatible chat route is and how to call it."""

    name: str
    url: str
    metrics_url: str
    headers: dict[str, str]


@dataclass
class Sample:
    """What one streamed request saw. Times are seconds from sending the request."""

    max_tokens: int = 0
    turn: int = 0
    """Which request of its client this was (a conversation's turn in `multi-turn`)."""
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int = 0
    cached_prompt_tokens: int | None = None
    cached_from: str | None = None
    """Where `cached_prompt_tokens` came from: `usage` (`prompt_tokens_details.cached_tokens`) or
    `timings` (llama-server's `timings.cache_n`)."""
    text: str = ""
    finish_reason: str | None = None
    ttft_s: float | None = None
    latency_s: float = 0.0
    itl_s: float | None = None
    chunk_gaps_s: list[float] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "turn": self.turn,
            "max_tokens": self.max_tokens,
            "error": self.error,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
            "cached_from": self.cached_from,
            "finish_reason": self.finish_reason,
            "ttft_ms": _ms(self.ttft_s),
            "latency_ms": _ms(self.latency_s),
            "itl_ms": _ms(self.itl_s),
        }


async def stream_chat(
    client: httpx.AsyncClient,
    target: Target,
    messages: list[dict[str, str]],
    *,
    max_tokens: int,
    timeout_s: float,
    temperature: float = 0.0,
    top_p: float | None = None,
) -> Sample:
    body: dict[str, Any] = {
        "model": DEPLOYMENT,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    if top_p is not None:
        body["top_p"] = top_p
    sample = Sample(max_tokens=max_tokens)
    content_at: list[float] = []
    pieces: list[str] = []
    usage: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        async with (
            asyncio.timeout(timeout_s),
            client.stream("POST", target.url, json=body, headers=target.headers) as response,
        ):
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                sample.error = f"HTTP {response.status_code}: {text[:300]}"
            else:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    now = time.perf_counter()
                    event = json.loads(data)
                    if "error" in event:
                        sample.error = f"stream error event: {json.dumps(event['error'])[:300]}"
                    for choice in event.get("choices") or []:
                        if piece := (choice.get("delta") or {}).get("content"):
                            content_at.append(now)
                            pieces.append(piece)
                        sample.finish_reason = choice.get("finish_reason") or sample.finish_reason
                    usage = event.get("usage") or usage
                    timings = event.get("timings") or timings
    except TimeoutError:
        sample.error = f"timed out after {timeout_s:.0f} s"
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    sample.latency_s = time.perf_counter() - started
    sample.text = "".join(pieces)
    sample.completion_tokens = int(usage.get("completion_tokens", len(content_at)))
    sample.prompt_tokens = usage.get("prompt_tokens")
    details = usage.get("prompt_tokens_details") or {}
    if "cached_tokens" in details:
        sample.cached_prompt_tokens, sample.cached_from = int(details["cached_tokens"]), "usage"
    elif "cache_n" in timings:  # older llama-server: prompt tokens taken from the slot's cache
        sample.cached_prompt_tokens, sample.cached_from = int(timings["cache_n"]), "timings"
    if content_at:
        sample.ttft_s = content_at[0] - started
        sample.chunk_gaps_s = [b - a for a, b in itertools.pairwise(content_at)]
        if sample.completion_tokens > 1:
            # Mean time per token after the first: robust to a server packing several tokens into a chunk.
            sample.itl_s = (content_at[-1] - content_at[0]) / (sample.completion_tokens - 1)
    elif sample.error is None:
        sample.error = "no content in the stream"
    if sample.error is None and sample.finish_reason == "error":
        sample.error = "the stream ended with finish_reason 'error'"
    return sample


# -- workloads -----------------------------------------------------------------------------------


@dataclass
class WorkloadRun:
    workload: Workload
    samples: list[Sample]
    wall_s: float

    def summary(self) -> dict[str, Any]:
        good = [s for s in self.samples if s.error is None]
        tokens = sum(s.completion_tokens for s in good)
        ttfts = [s.ttft_s for s in good if s.ttft_s is not None]
        itls = [s.itl_s for s in good if s.itl_s is not None]
        gaps = [g for s in good for g in s.chunk_gaps_s]
        prompt = [s.prompt_tokens for s in good if s.prompt_tokens is not None]
        summary = {
            "streams": self.workload.streams,
            "requests": len(self.samples),
            "errors": len(self.samples) - len(good),
            "error_examples": sorted({s.error for s in self.samples if s.error})[:3],
            # ignore_eos: a reply shorter than asked means the server did less work than the other.
            "short_replies": sum(1 for s in good if s.completion_tokens != s.max_tokens),
            "output_tokens": tokens,
            "wall_s": round(self.wall_s, 3),
            "tokens_per_s": round(tokens / self.wall_s, 2) if self.wall_s > 0 else None,
            "ttft_p50_ms": _ms(percentile(ttfts, 50)),
            "ttft_p95_ms": _ms(percentile(ttfts, 95)),
            "itl_p50_ms": _ms(percentile(itls, 50)),
            "chunk_gap_p50_ms": _ms(percentile(gaps, 50)),
            "chunk_gap_p95_ms": _ms(percentile(gaps, 95)),
            "prompt_tokens_mean": round(sum(prompt) / len(prompt), 1) if prompt else None,
            **cache_hits(good),
        }
        if self.workload.prompts == "multi-turn":
            # The first turn finds nothing cached; later turns show what a returning user gets.
            turns = range(self.workload.requests_per_stream)
            by_turn = [[s for s in good if s.turn == t] for t in turns]
            summary["ttft_p50_ms_by_turn"] = [
                _ms(percentile([s.ttft_s for s in ss if s.ttft_s is not None], 50)) for ss in by_turn
            ]
            summary["prefix_hit_rate_by_turn"] = [cache_hits(ss)["prefix_hit_rate"] for ss in by_turn]
        return summary | {"samples": [s.record() for s in self.samples]}


def cache_hits(samples: list[Sample]) -> dict[str, Any]:
    """Prompt tokens served from a cache over all prompt tokens, when every request reported both."""
    cached = [s.cached_prompt_tokens for s in samples if s.cached_prompt_tokens is not None]
    prompt = sum(s.prompt_tokens or 0 for s in samples)
    complete = bool(samples) and len(cached) == len(samples)
    return {
        "cached_prompt_tokens": sum(cached) if complete else None,
        "prefix_hit_rate": round(sum(cached) / prompt, 3) if complete and prompt > 0 else None,
        "cached_from": "+".join(sorted({s.cached_from for s in samples if s.cached_from})) or None,
    }


@dataclass(frozen=True)
class Requests:
    """What every request of a workload is sent with, besides its prompt."""

    max_tokens: int
    """The reply length of workloads without `answer_tokens`."""
    timeout_s: float
    seed: int
    """Fixes the multi-turn histories, the documents and the reply lengths."""


async def run_workload(
    client: httpx.AsyncClient, target: Target, workload: Workload, *, first_prompt: int, requests: Requests
) -> WorkloadRun:
    """Each of `streams` clients sends its requests back to back, so a finished stream's slot is
    refilled at once (continuous batching is what is measured, not lock-step rounds). In `multi-turn`
    each client is one user whose requests are the turns of its conversation."""
    samples: list[Sample] = []
    users = (
        conversations(first_prompt, workload.streams, seed=requests.seed)
        if workload.prompts == "multi-turn"
        else []
    )

    def prompt(stream: int, index: int) -> list[dict[str, str]]:
        match workload.prompts:
            case "multi-turn":
                return users[stream].ask()
            case "shared-prefix":
                return shared_prefix_prompt(index)
            case "long-prompt":
                return long_prompt(index, seed=requests.seed)
            case _:
                return stream_prompt(index)

    async def client_loop(stream: int) -> None:
        for r in range(workload.requests_per_stream):
            index = first_prompt + r * workload.streams + stream
            sample = await stream_chat(
                client,
                target,
                prompt(stream, index),
                max_tokens=workload.reply_tokens(index, default=requests.max_tokens, seed=requests.seed),
                timeout_s=requests.timeout_s,
                temperature=workload.temperature,
                top_p=workload.top_p,
            )
            sample.turn = r
            if users:
                users[stream].answered(sample.text)
            samples.append(sample)

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(i) for i in range(workload.streams)))
    return WorkloadRun(workload, samples, time.perf_counter() - started)


def _client(timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    # trust_env=False: a proxy from the environment must never see loopback benchmark traffic.
    return httpx.AsyncClient(timeout=timeout_s, limits=limits, trust_env=False)


async def warm_up(client: httpx.AsyncClient, target: Target, timeout_s: float) -> None:
    hello = [{"role": "user", "content": "Say hello."}]
    warmup = await stream_chat(client, target, hello, max_tokens=8, timeout_s=timeout_s)
    if warmup.error:
        raise RuntimeError(f"{target.name}: warm-up request failed: {warmup.error}")


async def warm_up_and_run(
    target: Target, workload: Workload, *, first_prompt: int, requests: Requests
) -> tuple[WorkloadRun, dict[str, float]]:
    """The workload's run, and how much the server's `/metrics` counters grew during it."""
    async with _client(requests.timeout_s) as client:
        await warm_up(client, target, requests.timeout_s)
        before = await scrape_counters(client, target)
        run = await run_workload(client, target, workload, first_prompt=first_prompt, requests=requests)
        after = await scrape_counters(client, target)
        return run, {k: round(v - before.get(k, 0.0), 3) for k, v in after.items()}


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^}]*\})?\s+(\S+)")


GAUGES = frozenset({"aimi_engine_prompt_cache_bytes", "aimi_engine_prompt_cache_entries"})
"""Gauges whose growth during a workload is reported with the counters: what aimi's prompt cache
took of the peak RSS."""


async def scrape_counters(client: httpx.AsyncClient, target: Target) -> dict[str, float]:
    """The `*_total` counters (and `GAUGES`) of the server's Prometheus `/metrics`, summed over
    labels; {} if none."""
    try:
        response = await client.get(target.metrics_url, headers=target.headers, timeout=10.0)
    except httpx.HTTPError:
        return {}
    if response.status_code != 200:
        return {}
    totals: dict[str, float] = {}
    for line in response.text.splitlines():
        match = _SAMPLE.match(line)
        if match and (match[1].endswith("_total") or match[1] in GAUGES):
            with contextlib.suppress(ValueError):
                totals[match[1]] = totals.get(match[1], 0.0) + float(match[2])
    return totals


# -- server processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server_process(
    name: str,
    argv: list[str],
    *,
    ready_url: str,
    log_path: Path,
    stop_signal: int,
    start_timeout_s: float,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server, wait until `ready_url` answers 200, and always stop it (by its own pid)."""
    _log(f"starting {name}: {' '.join(argv)}")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    try:
        deadline = time.monotonic() + start_timeout_s
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}: {_tail(log_path)}")
                try:
                    if client.get(ready_url).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready after {start_timeout_s:.0f} s: {_tail(log_path)}")
                time.sleep(0.25)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(stop_signal)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the process has used so far, all its threads together."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Config:
    model: Path
    threads: int
    parallel: int
    context_size: int
    max_tokens: int
    timeout_s: float
    start_timeout_s: float
    workloads: tuple[Workload, ...]
    aimi_safety: bool = False
    """Run aimi with content safety on (off by default: llama-server has none to compare with)."""
    seed: int = 0

    @property
    def requests(self) -> Requests:
        return Requests(max_tokens=self.max_tokens, timeout_s=self.timeout_s, seed=self.seed)


def server_argv(
    name: str, config: Config, *, bin_dir: Path | None, port: int, key: str, data_dir: Path
) -> list[str]:
    common = {"--host": LOOPBACK, "--port": port}
    if name == "llama-server":
        if bin_dir is None:
            raise RuntimeError("llama-server needs its bin dir")
        return [
            str(bin_dir / "llama-server"),
            *_options({"-m": config.model, **common, "-t": config.threads, "-tb": config.threads}),
            *_options({"-np": config.parallel, "-c": config.parallel * config.context_size}),
            "--metrics",
        ]
    aimi = Path(sys.executable).parent / "aimi"
    return [
        str(aimi),
        "serve",
        *_options({**common, "--model": config.model, "--api-key": key, "--name": DEPLOYMENT}),
        *_options({"--threads": config.threads, "--parallel": config.parallel}),
        *_options({"--context-size": config.context_size, "--data-dir": data_dir, "--log-level": "warning"}),
        "--safety" if config.aimi_safety else "--no-safety",
    ]


def measure(
    name: str, workload: Workload, config: Config, *, first_prompt: int, bin_dir: Path | None, logs: Path
) -> dict[str, Any]:
    """One workload on a freshly started server: its summary, or an `error` when it could not run."""
    port = free_port()
    key = secrets.token_hex(16)
    base = f"http://{LOOPBACK}:{port}"
    log_path = logs / f"{name}-{workload.name}.log"
    extra: dict[str, Any] = {"load_average_before": list(os.getloadavg()), "log": str(log_path)}
    try:
        with tempfile.TemporaryDirectory(prefix="aimi-bench-") as data_dir:
            argv = server_argv(name, config, bin_dir=bin_dir, port=port, key=key, data_dir=Path(data_dir))
            with server_process(
                name,
                argv,
                ready_url=f"{base}/health" if name == "llama-server" else f"{base}/readyz",
                log_path=log_path,
                stop_signal=signal.SIGTERM if name == "llama-server" else signal.SIGINT,
                start_timeout_s=config.start_timeout_s,
                # /metrics needs aimi's admin key: the benchmark makes it the same as the deployment's
                env={**os.environ, "AIMI_ADMIN_KEY": key},
            ) as proc:
                auth = {"Authorization": f"Bearer {key}"}
                target = Target(name, f"{base}/v1/chat/completions", f"{base}/metrics", auth)
                run, counters = asyncio.run(
                    warm_up_and_run(target, workload, first_prompt=first_prompt, requests=config.requests)
                )
                extra["peak_rss_mb"] = peak_rss_mb(proc.pid)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _log(f"{name:>12} {workload.name:<16} failed: {exc}")
        return {"error": str(exc), "errors": workload.requests, "requests": workload.requests, **extra}
    summary = run.summary() | extra | {"metrics_delta": counters}
    prompt, reused = (
        counters.get(f"aimi_engine_{k}_total") for k in ("prompt_tokens", "prompt_tokens_reused")
    )
    if summary["prefix_hit_rate"] is None and prompt and reused is not None:
        # aimi reports prefix reuse in /metrics rather than per request.
        summary["prefix_hit_rate"] = round(reused / prompt, 3)
        summary["cached_from"] = "metrics"
    _log(
        f"{name:>12} {workload.name:<16} {summary['tokens_per_s'] or 0:7.1f} tok/s  "
        f"TTFT p50 {summary['ttft_p50_ms'] or 0:7.0f} ms  "
        f"ITL p50 {summary['itl_p50_ms'] or 0:5.1f} ms  errors {summary['errors']}"
    )
    return summary


def first_prompts(workloads: tuple[Workload, ...]) -> dict[str, int]:
    """Where each workload starts in its prompt list, so no prompt is sent twice in a run."""
    starts: dict[str, int] = {}
    used = dict.fromkeys(PROMPTS, 0)
    for w in workloads:
        starts[w.name] = used[w.prompts]
        used[w.prompts] += w.requests
    return starts


# -- gateway overhead ----------------------------------------------------------------------------

GATEWAY_MODEL = "SmolLM2-135M-Instruct"
"""The catalog offer of the upstream deployment (aimi only forwards: the GGUF is llama-server's)."""
GATEWAY_STREAMS = 8
_UNLIMITED = 1_000_000_000
"""The upstream deployment's quotas: checked and counted on every request, never reached."""


@dataclass(frozen=True)
class Gateway:
    """The gateway measurement: `latency_requests` short non-streamed requests one at a time, each sent
    once directly and once through aimi, then `GATEWAY_STREAMS` streams of `requests_per_stream`
    requests each, directly, through aimi, through aimi, directly (drift in load cancels)."""

    latency_requests: int
    requests_per_stream: int


async def timed_request(client: httpx.AsyncClient, target: Target, timeout_s: float) -> float | str:
    """Seconds a short non-streamed chat request took, or what went wrong."""
    body = {
        "model": DEPLOYMENT,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 8,
        "temperature": 0.0,
        "ignore_eos": True,
    }
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.post(target.url, json=body, headers=target.headers)
        took = time.perf_counter() - started
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:300]}"
        if not response.json().get("choices"):
            return "no choices in the answer"
        return took
    except TimeoutError:
        return f"timed out after {timeout_s:.0f} s"
    except (httpx.HTTPError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


async def gateway_run(
    direct: Target,
    gateway: Target,
    plan: Gateway,
    *,
    first_prompt: int,
    requests: Requests,
    pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """`pids` (of `aimi` and `llama-server`): also the CPU time each used per request and per token
    on each side, which the machine's load moves much less than wall time."""
    pids = pids or {}

    def cpu() -> dict[str, float | None]:
        return {name: cpu_seconds(pid) for name, pid in pids.items()}

    short_cpu: dict[str, dict[str, float]] = {"direct": {}, "gateway": {}}
    stream_cpu: dict[str, dict[str, float]] = {"direct": {}, "gateway": {}}

    def charge(used: dict[str, float], before: dict[str, float | None]) -> None:
        """Add what each process used since `before` to `used` (one side's `{process: seconds}`)."""
        for name, now in cpu().items():
            then = before.get(name)
            if now is not None and then is not None:
                used[name] = used.get(name, 0.0) + now - then

    async with _client(requests.timeout_s) as client:
        for target in (direct, gateway):
            await warm_up(client, target, requests.timeout_s)
        took: dict[str, list[float]] = {"direct": [], "gateway": []}
        paired: list[float] = []
        errors: list[str] = []
        for i in range(plan.latency_requests):
            order = (("direct", direct), ("gateway", gateway))
            pair: dict[str, float] = {}
            for side, target in order if i % 2 == 0 else order[::-1]:
                before = cpu()
                outcome = await timed_request(client, target, requests.timeout_s)
                charge(short_cpu[side], before)
                if isinstance(outcome, str):
                    errors.append(f"{side}: {outcome}")
                else:
                    took[side].append(pair.setdefault(side, outcome))
            if len(pair) == 2:
                paired.append(pair["gateway"] - pair["direct"])
        streams = Workload(f"gateway-streams-{GATEWAY_STREAMS}", GATEWAY_STREAMS, plan.requests_per_stream)
        runs: dict[str, list[WorkloadRun]] = {"direct": [], "gateway": []}
        for k, side in enumerate(("direct", "gateway", "gateway", "direct")):
            before = cpu()
            run = await run_workload(
                client,
                gateway if side == "gateway" else direct,
                streams,
                first_prompt=first_prompt + k * streams.requests,
                requests=requests,
            )
            charge(stream_cpu[side], before)
            runs[side].append(run)
            _log(f"{'gateway':>12} {side:<16} {run.summary()['tokens_per_s'] or 0:7.1f} tok/s")
    throughput: dict[str, Any] = {}
    for side, twice in runs.items():
        good = [s for run in twice for s in run.samples if s.error is None]
        wall = sum(run.wall_s for run in twice)
        tokens = sum(s.completion_tokens for s in good)
        throughput[side] = {
            "tokens_per_s": round(tokens / wall, 2) if wall else None,
            "cpu_ms_per_token": {
                name: round(1000 * used / tokens, 3) for name, used in stream_cpu[side].items() if tokens
            },
            "errors": sum(len(run.samples) for run in twice) - len(good),
            "runs": [{k: v for k, v in run.summary().items() if k != "samples"} for run in twice],
        }
        errors += [f"{side}: {s.error}" for run in twice for s in run.samples if s.error]
    direct_p50, gateway_p50 = (percentile(took[side], 50) for side in ("direct", "gateway"))
    return {
        "latency": {
            "requests": plan.latency_requests,
            "direct_p50_ms": _ms(direct_p50),
            "gateway_p50_ms": _ms(gateway_p50),
            "added_p50_ms": _ms(gateway_p50 - direct_p50)
            if gateway_p50 is not None and direct_p50 is not None
            else None,
            "added_paired_p50_ms": _ms(percentile(paired, 50)),
            "direct_p95_ms": _ms(percentile(took["direct"], 95)),
            "gateway_p95_ms": _ms(percentile(took["gateway"], 95)),
            "cpu_ms_per_request": {
                side: {
                    name: round(1000 * used / max(1, len(took[side])), 2)
                    for name, used in short_cpu[side].items()
                }
                for side in ("direct", "gateway")
            },
        },
        "throughput": {
            "streams": GATEWAY_STREAMS,
            "requests_per_stream": plan.requests_per_stream,
            **throughput,
            "ratio": _ratio(throughput["gateway"]["tokens_per_s"], throughput["direct"]["tokens_per_s"]),
        },
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
    }


def upstream_deployment(base: str, admin_key: str, upstream: str) -> str:
    """Deploy `upstream` through aimi's management API, content safety off; its primary key."""
    auth = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=base, headers=auth, timeout=60.0, trust_env=False) as api:
        created = api.post(
            "/api/deployments",
            json={
                "project": "bench",
                "model": GATEWAY_MODEL,
                "name": DEPLOYMENT,
                "source": upstream,
                "requests_per_minute": _UNLIMITED,
                "tokens_per_minute": _UNLIMITED,
            },
        )
        if created.status_code != 201:
            raise RuntimeError(
                f"creating the upstream deployment: HTTP {created.status_code}: {created.text}"
            )
        safety = api.put(f"/api/deployments/{DEPLOYMENT}/safety", json={"enabled": False})
        if safety.status_code != 200:
            raise RuntimeError(f"turning content safety off: HTTP {safety.status_code}: {safety.text}")
        return next(k["key"] for k in created.json()["keys"] if k["which"] == "primary")


def ledger_totals(base: str, admin_key: str) -> dict[str, Any] | None:
    """What the usage ledger holds for the upstream deployment: proof that it metered the run."""
    auth = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=base, headers=auth, timeout=60.0, trust_env=False) as api:
        response = api.get("/api/usage", params={"deployment": DEPLOYMENT})
    if response.status_code != 200:
        return None
    total = response.json()["total"]
    return {k: total[k] for k in ("requests", "prompt_tokens", "completion_tokens")}


def measure_gateway(
    config: Config, plan: Gateway, *, first_prompt: int, bin_dir: Path | None, logs: Path
) -> dict[str, Any]:
    """aimi in front of llama-server (a deployment whose source is its URL; keys, quotas and the ledger
    on, content safety off) against the same llama-server called directly."""
    llama_port, aimi_port = free_port(), free_port()
    llama, aimi = f"http://{LOOPBACK}:{llama_port}", f"http://{LOOPBACK}:{aimi_port}"
    admin_key = secrets.token_hex(16)
    out: dict[str, Any] = {"load_average_before": list(os.getloadavg())}
    try:
        with tempfile.TemporaryDirectory(prefix="aimi-bench-") as data_dir:
            argv = server_argv(
                "llama-server", config, bin_dir=bin_dir, port=llama_port, key="", data_dir=Path()
            )
            # Only the upstream deployment: no quick-start model, so no engine of aimi's own.
            env = {**os.environ, "AIMI_SERVES_QUICKSTART": "false", "AIMI_ADMIN_KEY": admin_key}
            aimi_argv = [
                str(Path(sys.executable).parent / "aimi"),
                "serve",
                *_options({"--host": LOOPBACK, "--port": aimi_port, "--data-dir": data_dir}),
                *_options({"--log-level": "warning"}),
            ]
            with (
                server_process(
                    "llama-server",
                    argv,
                    ready_url=f"{llama}/health",
                    log_path=logs / "gateway-llama-server.log",
                    stop_signal=signal.SIGTERM,
                    start_timeout_s=config.start_timeout_s,
                ) as llama_proc,
                server_process(
                    "aimi",
                    aimi_argv,
                    ready_url=f"{aimi}/readyz",
                    log_path=logs / "gateway-aimi.log",
                    stop_signal=signal.SIGINT,
                    start_timeout_s=config.start_timeout_s,
                    env=env,
                ) as aimi_proc,
            ):
                key = upstream_deployment(aimi, admin_key, llama)
                direct = Target("llama-server", f"{llama}/v1/chat/completions", f"{llama}/metrics", {})
                auth = {"Authorization": f"Bearer {key}"}
                gateway = Target("aimi gateway", f"{aimi}/v1/chat/completions", f"{aimi}/metrics", auth)
                pids = {"aimi": aimi_proc.pid, "llama-server": llama_proc.pid}
                out |= asyncio.run(
                    gateway_run(
                        direct, gateway, plan, first_prompt=first_prompt, requests=config.requests, pids=pids
                    )
                )
                out["ledger"] = ledger_totals(aimi, admin_key)
                out["peak_rss_mb"] = {
                    "llama-server": peak_rss_mb(llama_proc.pid),
                    "aimi": peak_rss_mb(aimi_proc.pid),
                }
    except (RuntimeError, OSError, subprocess.SubprocessError, httpx.HTTPError) as exc:
        _log(f"{'gateway':>12} failed: {exc}")
        return out | {"error": str(exc), "errors": 1}
    return out


def gateway_lines(g: dict[str, Any]) -> list[str]:
    if "error" in g:
        return [f"gateway overhead: failed: {g['error']}"]
    lat, tput = g["latency"], g["throughput"]
    return [
        f"gateway overhead (aimi in front of llama-server, keys/quotas/ledger on, safety off), "
        f"errors {g['errors']}:",
        f"  latency p50 over {lat['requests']} short requests: direct {_num(lat['direct_p50_ms'])} ms, "
        f"through aimi {_num(lat['gateway_p50_ms'])} ms, added {_num(lat['added_p50_ms'], 2)} ms "
        f"(paired p50 {_num(lat['added_paired_p50_ms'], 2)} ms)",
        f"  tokens/s at {tput['streams']} streams: direct {_num(tput['direct']['tokens_per_s'])}, "
        f"through aimi {_num(tput['gateway']['tokens_per_s'])}, ratio {_num(tput['ratio'], 3)}",
        *_cpu_lines(lat.get("cpu_ms_per_request", {}), "ms a short request"),
        *_cpu_lines(
            {side: tput[side].get("cpu_ms_per_token", {}) for side in ("direct", "gateway")}, "ms a token"
        ),
    ]


def _cpu_lines(by_side: dict[str, dict[str, float]], unit: str) -> list[str]:
    """CPU time per unit of work, each process on each side: `{side: {process: ms}}`."""
    if not any(by_side.values()):
        return []
    shown = ", ".join(
        f"{side}: " + " + ".join(f"{name} {ms:.2f}" for name, ms in used.items())
        for side, used in by_side.items()
    )
    return [f"  CPU {unit}: {shown}"]


# -- llama-server build and llama-bench ----------------------------------------------------------


def build_llama_server() -> Path:
    _log(f"building or locating llama-server with {BUILD_SCRIPT.relative_to(REPO)}")
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, env=env, check=True, timeout=3600
    )
    return Path(out.stdout.strip().splitlines()[-1])


def llama_bench(bin_dir: Path, config: Config) -> dict[str, Any]:
    options = {"-m": config.model, "-t": config.threads, "-p": 512, "-n": 128, "-r": 3, "-o": "json"}
    argv = [str(bin_dir / "llama-bench"), *_options(options)]
    _log(f"running {' '.join(argv)}")
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=900)
    result: dict[str, Any] = {"argv": argv}
    for row in json.loads(out.stdout):
        key = "tg128" if row.get("n_gen", 0) > 0 and row.get("n_prompt", 0) == 0 else "pp512"
        result[key] = {"tokens_per_s": round(row["avg_ts"], 2), "stddev": round(row["stddev_ts"], 2)}
        result.setdefault("build", {"commit": row.get("build_commit"), "cpu": row.get("cpu_info")})
    return result


# -- report --------------------------------------------------------------------------------------

RATIO_METRICS = ("tokens_per_s", "ttft_p50_ms", "ttft_p95_ms", "itl_p50_ms")


def ratios(servers: dict[str, Any], workloads: tuple[Workload, ...]) -> dict[str, dict[str, Any]]:
    """aimi / llama-server per workload and metric (tokens/s: higher is better; times: lower)."""
    out: dict[str, dict[str, Any]] = {}
    a = servers.get("aimi", {}).get("workloads", {})
    b = servers.get("llama-server", {}).get("workloads", {})
    for w in workloads:
        if w.name in a and w.name in b:
            x, y = a[w.name], b[w.name]
            out[w.name] = {m: _ratio(x.get(m), y.get(m)) for m in RATIO_METRICS}
            # Failed or short replies leave out work on one side: such ratios are not a fair comparison.
            out[w.name]["comparable"] = not any(s.get("errors") or s.get("short_replies") for s in (x, y))
    return out


def table(result: dict[str, Any]) -> str:
    servers = result["servers"]
    head = (
        f"{'workload':<16} {'llama tok/s':>11} {'aimi tok/s':>10} {'tok/s':>6} {'TTFT50':>7} "
        f"{'TTFT95':>7} {'ITL50':>6} {'errors l/a':>10} {'cache hits l/a':>15} {'RSS MB l/a':>11}"
    )
    lines = ["ratios are aimi / llama-server (tok/s: >1 is better for aimi; TTFT, ITL: <1 is better)", head]
    for w in result["config"]["workloads"]:
        name = w["name"]
        row = [servers.get(s, {}).get("workloads", {}).get(name, {}) for s in SERVERS]
        r = result["ratios"].get(name, {})
        label = name + (" *" if r and not r["comparable"] else "")
        lines.append(
            f"{label:<16} {_num(row[0].get('tokens_per_s')):>11} {_num(row[1].get('tokens_per_s')):>10} "
            f"{_num(r.get('tokens_per_s'), 2):>6} {_num(r.get('ttft_p50_ms'), 2):>7} "
            f"{_num(r.get('ttft_p95_ms'), 2):>7} {_num(r.get('itl_p50_ms'), 2):>6} "
            f"{row[0].get('errors', '-')!s:>5}/{row[1].get('errors', '-')!s:<4} "
            f"{_num(row[0].get('prefix_hit_rate'), 2):>9}/{_num(row[1].get('prefix_hit_rate'), 2):<5} "
            f"{_num(row[0].get('peak_rss_mb'), 0):>5}/{_num(row[1].get('peak_rss_mb'), 0):<5}"
        )
    if any(not r["comparable"] for r in result["ratios"].values()):
        lines.append("* errors or short replies on one side: that row's ratios are not a fair comparison")
    bench = result.get("llama_bench") or {}
    if "tg128" in bench:
        lines.append(
            f"llama-bench ceiling: tg128 {bench['tg128']['tokens_per_s']} ± {bench['tg128']['stddev']} "
            f"tok/s, pp512 {bench.get('pp512', {}).get('tokens_per_s')} tok/s"
        )
    if "gateway" in result:
        lines += gateway_lines(result["gateway"])
    return "\n".join(lines)


def chart(result: dict[str, Any], paths: list[Path]) -> bool:
    """Grouped bars per workload, one panel per metric; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _log("matplotlib is missing, no chart: pip install 'aimi[bench]' (or matplotlib)")
        return False
    names = [w["name"] for w in result["config"]["workloads"]]
    servers = [s for s in SERVERS if "workloads" in result["servers"].get(s, {})]
    panels = (
        ("tokens_per_s", "aggregate output tokens/s (higher is better)"),
        ("ttft_p50_ms", "p50 time to first token, ms (lower is better)"),
        ("ttft_p95_ms", "p95 time to first token, ms (lower is better)"),
        ("itl_p50_ms", "p50 inter-token latency, ms (lower is better)"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    width = 0.8 / max(len(servers), 1)
    for ax, (metric, title) in zip(axes.flat, panels, strict=True):
        for j, server in enumerate(servers):
            got = result["servers"][server]["workloads"]
            values = [got.get(n, {}).get(metric) or 0.0 for n in names]
            xs = [i + (j - (len(servers) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, values, width, label=server, color="#4C72B0" if server == "aimi" else "#DD8452")
        bench = (result.get("llama_bench") or {}).get("tg128")
        if metric == "tokens_per_s" and bench:
            ax.axhline(
                bench["tokens_per_s"], color="gray", linestyle="--", label="llama-bench tg128 (1 stream)"
            )
        ax.set_title(title, fontsize=10)
        labels = []
        for n in names:
            r = result["ratios"].get(n, {})
            value = r.get(metric)
            label = n if value is None else f"{n}\n×{value:.2f}"
            labels.append(label + ("\n(errors)" if r and not r["comparable"] else ""))
        ax.set_xticks(range(len(names)), labels, fontsize=8)
        ax.legend(fontsize=8)
    c = result["config"]
    fig.suptitle(
        f"aimi vs llama-server: {Path(c['model']).name}, {c['threads']} threads, {c['parallel']} slots, "
        f"{c['max_tokens']} tokens per reply ({result['started_at']}); ×: aimi / llama-server",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    for path in paths:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a reduced set (1 and 8 streams, fewer requests)")
    p.add_argument(
        "--workloads",
        help="comma-separated subset of the workloads to run, or `none` (with --gateway) "
        "[default: all of the set]",
    )
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results folder")
    p.add_argument("--model", type=Path, help="GGUF to serve [default: aimi's embedded SmolLM2]")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=8, help="slots on both servers")
    p.add_argument("--context-size", type=int, default=2048, help="tokens per slot")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens generated per request")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one request may take")
    p.add_argument(
        "--seed", type=int, default=0, help="fixes the multi-turn histories, the documents and reply lengths"
    )
    p.add_argument(
        "--gateway",
        action="store_true",
        help="also measure aimi as a gateway in front of llama-server against llama-server directly",
    )
    p.add_argument(
        "--gateway-requests",
        type=int,
        help="short requests for the gateway's added latency [default: 50, quick: 10]",
    )
    p.add_argument(
        "--servers", default=",".join(SERVERS), help="comma-separated subset of: " + ", ".join(SERVERS)
    )
    p.add_argument(
        "--llama-bin", type=Path, help="folder with llama-server and llama-bench (skips the build)"
    )
    p.add_argument("--no-llama-bench", action="store_true", help="skip the llama-bench ceiling")
    p.add_argument(
        "--aimi-safety",
        action="store_true",
        help="serve with aimi's content safety on (its cost; llama-server has no safety to compare)",
    )
    return p.parse_args(argv)


def default_model() -> Path:
    from aimi.engines.llamacpp.embedded import embedded_model_path

    return embedded_model_path()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops a running server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    chosen = [s.strip() for s in args.servers.split(",") if s.strip()]
    if unknown := set(chosen) - set(SERVERS):
        raise SystemExit(f"--servers: unknown {sorted(unknown)}")
    workloads: tuple[Workload, ...] = QUICK if args.quick else FULL
    if args.workloads:
        names = [w.strip() for w in args.workloads.split(",") if w.strip() and w.strip() != "none"]
        if unknown := set(names) - {w.name for w in workloads}:
            raise SystemExit(f"--workloads: unknown {sorted(unknown)}")
        workloads = tuple(w for w in workloads if w.name in names)
    if not workloads and not args.gateway:
        raise SystemExit("nothing to measure: no workloads and no --gateway")
    workloads = tuple(w.for_slots(args.parallel) for w in workloads)
    config = Config(
        model=(args.model or default_model()).resolve(),
        threads=args.threads,
        parallel=args.parallel,
        context_size=args.context_size,
        max_tokens=args.max_tokens,
        timeout_s=args.timeout,
        start_timeout_s=180.0,
        workloads=workloads,
        aimi_safety=args.aimi_safety,
        seed=args.seed,
    )
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / f"serving-{stamp}-logs"
    logs.mkdir()

    needs_llama = "llama-server" in chosen or args.gateway or not args.no_llama_bench
    bin_dir = (args.llama_bin or build_llama_server()).resolve() if needs_llama else None
    result: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "host": {
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "config": {
            "model": str(config.model),
            "threads": config.threads,
            "parallel": config.parallel,
            "context_size": config.context_size,
            "max_tokens": config.max_tokens,
            "aimi_safety": config.aimi_safety,
            "request_timeout_s": config.timeout_s,
            "seed": config.seed,
            "workloads": [vars(w) | {"requests": w.requests} for w in config.workloads],
        },
        "llama_cpp_python": _version("llama-cpp-python"),
        "aimi": _version("aimi"),
        "llama_bin": str(bin_dir) if bin_dir else None,
        "llama_build_flags": _read(bin_dir / "BUILD-FLAGS") if bin_dir else None,
    }
    if bin_dir and not args.no_llama_bench:
        try:
            result["llama_bench"] = llama_bench(bin_dir, config)
        except (subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
            result["llama_bench"] = {"error": f"{type(exc).__name__}: {exc}"}
    # Each workload runs on both servers back to back (fresh processes), alternating which goes first,
    # so the two numbers of a pair are taken minutes apart at most and drift in machine load cancels.
    servers: dict[str, dict[str, Any]] = {name: {"workloads": {}} for name in chosen}
    starts = first_prompts(config.workloads)
    for i, workload in enumerate(config.workloads):
        for name in chosen if i % 2 == 0 else chosen[::-1]:
            servers[name]["workloads"][workload.name] = measure(
                name, workload, config, first_prompt=starts[workload.name], bin_dir=bin_dir, logs=logs
            )
    for server in servers.values():
        rss = [w["peak_rss_mb"] for w in server["workloads"].values() if w.get("peak_rss_mb")]
        server["peak_rss_mb"] = max(rss, default=None)
    result["servers"] = servers
    result["ratios"] = ratios(result["servers"], config.workloads)
    if args.gateway:
        plan = Gateway(
            latency_requests=args.gateway_requests or (10 if args.quick else 50),
            requests_per_stream=1 if args.quick else 3,
        )
        result["gateway"] = measure_gateway(config, plan, first_prompt=0, bin_dir=bin_dir, logs=logs)
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")

    files = [args.out / f"serving-{stamp}.json", args.out / "serving-latest.json"]
    for path in files:
        path.write_text(json.dumps(result, indent=2) + "\n")
    charted = bool(config.workloads) and chart(
        result, [args.out / f"serving-{stamp}.png", args.out / "serving-latest.png"]
    )
    print(table(result))
    print(f"results: {files[0]}" + (f" and {files[0].with_suffix('.png')}" if charted else ""))
    failed = any(w["errors"] for server in servers.values() for w in server["workloads"].values())
    failed = failed or bool(result.get("gateway", {}).get("errors"))
    return 1 if failed else 0


# -- helpers -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _options(options: dict[str, object]) -> list[str]:
    return [str(item) for pair in options.items() for item in pair]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
