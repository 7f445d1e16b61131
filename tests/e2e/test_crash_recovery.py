"""`kill -9` in the middle of streaming answers: the ledger still bills what the clients received
(up to the last second of progress), and the next start closes those rows as `interrupted`."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from aimi.db.database import Database, sqlite_url
from aimi.platform.usage import UsageLedger
from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

STREAMS = 6


def stream(server: Server, received: list[int], index: int) -> None:
    """Read a long streamed answer until the connection breaks, counting the tokens received.

    Tokens are counted by their logprobs, not by content chunks: a character of several bytes
    (an emoji, a CJK character, which sampled text drifts into) can take several tokens, and
    only the one that completes it gives a chunk, carrying the logprobs of all of them."""
    body = {
        "messages": [{"role": "user", "content": "Count to a thousand."}],
        "stream": True,
        "max_tokens": 3000,
        "ignore_eos": True,
        "logprobs": True,
    }
    try:
        with httpx.stream(
            "POST",
            f"{server.endpoint}/v1/chat/completions",
            headers={"api-key": server.key},
            json=body,
            timeout=60,
        ) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    chunk = json.loads(line[len("data: ") :])
                    if chunk["choices"]:
                        received[index] += len(
                            (chunk["choices"][0].get("logprobs") or {}).get("content") or []
                        )
    except httpx.HTTPError:
        pass  # the server died under it


def ledger_rows(data_dir: Path) -> list[tuple[str, int, int, str | None, Decimal]]:
    db = Database(sqlite_url(data_dir))
    try:
        return [
            (r.state, r.prompt_tokens, r.completion_tokens, r.finish_reason, r.cost)
            for r in UsageLedger(db).records()
        ]
    finally:
        db.close()


def test_kill_9_mid_stream_loses_no_bill_and_the_next_start_closes_the_rows(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--parallel", str(STREAMS), "--no-safety")
    received = [0] * STREAMS
    threads = [
        threading.Thread(target=stream, args=(server, received, i), daemon=True) for i in range(STREAMS)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while min(received) < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    before_last_tick = sum(received)
    time.sleep(1.3)  # one progress tick (every second) has recorded at least that much
    server.process.kill()
    server.process.wait(timeout=10)
    for t in threads:
        t.join(timeout=10)
    assert min(received) >= 20, received

    left = ledger_rows(tmp_path / "data")
    assert [state for state, *_ in left] == ["in_progress"] * STREAMS
    assert all(prompt > 0 for _, prompt, *_ in left)

    restarted = start_server(tmp_path, "--parallel", str(STREAMS), "--no-safety")
    try:
        closed = ledger_rows(tmp_path / "data")
    finally:
        stop_server(restarted)
    assert [(state, reason) for state, _, _, reason, _ in closed] == [
        ("interrupted", "interrupted")
    ] * STREAMS
    assert all(cost > 0 for *_, cost in closed)
    billed = sum(completion for _, _, completion, *_ in closed)
    delivered = sum(received)
    # what was delivered before the last progress tick is billed; at most a step per stream more,
    # and the up to three tokens of a character a stream was cut in the middle of
    assert before_last_tick <= billed <= delivered + 4 * STREAMS, (before_last_tick, billed, delivered)
