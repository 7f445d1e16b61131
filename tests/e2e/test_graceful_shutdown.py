"""SIGTERM on a busy `aimi serve`: not ready at once, new and queued requests get a 503 they can
retry, running answers go on for the grace period and then end properly, every admitted request is
in the ledger, and the process is gone within the grace period plus two seconds."""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimi.db.database import Database, sqlite_url
from aimi.platform.usage import UsageLedger
from tests.conftest import Server, start_server

pytestmark = pytest.mark.e2e

ADMIN_KEY = "a" * 32
GRACE_S = 3.0
LONG = {"max_tokens": 3000, "ignore_eos": True, "temperature": 0}


@dataclass
class Outcome:
    """What one client saw."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[Any] = field(default_factory=list)
    body: Any = None
    first_token: threading.Event = field(default_factory=threading.Event)
    error: str | None = None


def ask(server: Server, outcome: Outcome, *, stream: bool) -> None:
    """One request on the Mistral route, read to its end (SSE events one by one when streamed)."""
    body = {"messages": [{"role": "user", "content": "Count to a thousand."}], "stream": stream, **LONG}
    try:
        with httpx.stream(
            "POST",
            f"{server.endpoint}/v1/chat/completions",
            headers={"api-key": server.key},
            json=body,
            timeout=60,
        ) as response:
            outcome.status, outcome.headers = response.status_code, dict(response.headers)
            if not stream or response.status_code != 200:
                outcome.body = json.loads(response.read())
                return
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                outcome.events.append(data if data == "[DONE]" else json.loads(data))
                if len(outcome.events) > 2:
                    outcome.first_token.set()
    except httpx.HTTPError as exc:
        outcome.error = repr(exc)


def engine_load(server: Server) -> tuple[float, float]:
    """Running and waiting sequences, from /metrics."""
    text = httpx.get(f"{server.base_url}/metrics", headers={"api-key": ADMIN_KEY}, timeout=5).text
    running = waiting = 0.0
    for line in text.splitlines():
        if line.startswith("aimi_engine_running_sequences"):
            running += float(line.rsplit(" ", 1)[1])
        elif line.startswith("aimi_engine_waiting_requests"):
            waiting += float(line.rsplit(" ", 1)[1])
    return running, waiting


def wait_until(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigterm_drains_running_answers_refuses_queued_ones_and_loses_no_ledger_row(
    tmp_path: Path,
) -> None:
    server = start_server(
        tmp_path,
        "--parallel",
        "5",
        "--no-safety",
        env={"AIMI_SHUTDOWN_GRACE_S": str(GRACE_S), "AIMI_ADMIN_KEY": ADMIN_KEY},
    )
    try:
        running = [Outcome() for _ in range(5)]  # four streams and one non-streamed answer
        queued = [Outcome() for _ in range(2)]  # one of each, waiting for a slot
        threads = [
            threading.Thread(target=ask, args=(server, o), kwargs={"stream": i < 4}, daemon=True)
            for i, o in enumerate(running)
        ]
        for t in threads:
            t.start()
        for o in running[:4]:
            assert o.first_token.wait(60)
        wait_until(lambda: engine_load(server)[0] == 5)
        threads += [
            threading.Thread(target=ask, args=(server, o), kwargs={"stream": i == 0}, daemon=True)
            for i, o in enumerate(queued)
        ]
        for t in threads[5:]:
            t.start()
        wait_until(lambda: engine_load(server)[1] == 2)

        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        wait_until(lambda: all(o.status is not None for o in queued), timeout=GRACE_S)
        ready = httpx.get(f"{server.base_url}/readyz", timeout=5)
        late = httpx.post(
            f"{server.endpoint}/chat/completions",
            headers={"api-key": server.key},
            json={"messages": [{"role": "user", "content": "hi"}]},
            timeout=5,
        )
        server.process.wait(timeout=GRACE_S + 5)
        exited_after = time.monotonic() - sent
        for t in threads:
            t.join(timeout=10)
    finally:
        if server.process.poll() is None:
            server.process.kill()

    assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
    for refused in [*queued, Outcome(late.status_code, dict(late.headers), body=late.json())]:
        assert refused.status == 503, refused
        assert refused.body["error"]["code"] == "ServiceUnavailable"
        assert "shutting down" in refused.body["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1

    for stream in running[:4]:
        assert stream.error is None, stream.error
        assert stream.events[-1] == "[DONE]"
        last = stream.events[-2]
        assert last["choices"][0]["finish_reason"] == "error"
        assert last["usage"]["completion_tokens"] > 0
    answer = running[4]
    assert answer.status == 200, answer.body
    assert answer.body["choices"][0]["finish_reason"] == "error"
    assert answer.body["choices"][0]["message"]["content"]
    assert answer.body["usage"]["completion_tokens"] > 0
    assert exited_after <= GRACE_S + 2, exited_after

    db = Database(sqlite_url(tmp_path / "data"))
    try:
        rows = UsageLedger(db).records()
    finally:
        db.close()
    assert sorted(r.status for r in rows) == [200] * 5 + [503] * 2
    assert {r.state for r in rows} == {"completed"}
    assert sorted(r.finish_reason or "" for r in rows if r.status == 200) == ["interrupted"] * 5
    delivered = sum(s.events[-2]["usage"]["completion_tokens"] for s in running[:4])
    billed = sum(r.completion_tokens for r in rows if r.streamed and r.status == 200)
    assert billed == delivered
    log = next(tmp_path.glob("serve-*.log")).read_text()
    assert "Traceback" not in log and "CancelledError" not in log, log
