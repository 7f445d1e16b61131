"""Shared fixtures: an in-process app over a scripted engine, and a real `aimi serve` process."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimi.api.app import create_app
from aimi.db.database import Database, sqlite_url
from aimi.db.tables import UsageRecord
from aimi.platform.usage import IN_PROGRESS, UsageLedger
from aimi.settings import Settings
from tests.fakes import RoomyEngine, ScriptedEngine

TEST_KEY = "k" * 32


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@asynccontextmanager
async def serving(settings: Settings, engine: ScriptedEngine) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to the app in process (streams arrive buffered)."""
    app = create_app(settings, engine=engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://aimi.test", headers={"api-key": TEST_KEY}
        ) as c:
            yield c


def fake_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for in-process tests: content safety off unless a test turns it on."""
    return Settings(
        **{"api_key": TEST_KEY, "name": "fake", "data_dir": tmp_path, "safety": False, **overrides}
    )


@pytest.fixture
async def client(engine: ScriptedEngine, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(fake_settings(tmp_path), engine) as c:
        yield c


@pytest.fixture
def roomy_engine() -> RoomyEngine:
    return RoomyEngine()


@pytest.fixture
async def roomy_client(roomy_engine: RoomyEngine, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Like `client`, with a context long enough for Mistral's safety prompt."""
    async with serving(fake_settings(tmp_path), roomy_engine) as c:
        yield c


@dataclass(frozen=True)
class Server:
    """A running `aimi serve` process."""

    base_url: str
    key: str
    deployment: str
    process: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/deployments/{self.deployment}"

    @property
    def data_dir(self) -> Path:
        args = [str(a) for a in self.process.args]  # type: ignore[union-attr]
        return Path(args[args.index("--data-dir") + 1])


def settled_ledger(
    server: Server, deployment: str, *, at_least: int, wait_s: float = 120.0
) -> list[UsageRecord]:
    """The ledger's rows for `deployment` once there are `at_least` and none is still in progress
    (a row is written at admission and takes its final figures as the answer ends, a moment after
    the client has read it); what is there after `wait_s` otherwise."""
    deadline = time.monotonic() + wait_s
    while True:
        db = Database(sqlite_url(server.data_dir))
        try:
            rows = UsageLedger(db).records(deployment=deployment)
        finally:
            db.close()
        settled = all(r.state != IN_PROGRESS for r in rows)
        if (len(rows) >= at_least and settled) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    tmp: Path,
    *extra: str,
    key: str = TEST_KEY,
    name: str = "smollm2",
    env: dict[str, str] | None = None,
    memory_limit: int | None = None,
) -> Server:
    """`env`: AIMI_* variables for this server (the caller's own AIMI_* are never passed on).
    `memory_limit`: bytes of address space the process may have (RLIMIT_AS), so that a runaway
    server fails alone instead of taking the test machine down."""
    port = free_port()
    log = open(tmp / f"serve-{port}.log", "wb")  # noqa: SIM115 - lives as long as the process
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AIMI_")} | (env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "aimi", "serve", "--port", str(port), "--api-key", key, "--name", name,
         "--data-dir", str(tmp / "data"), "--log-level", "warning", *extra],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
        preexec_fn=None if memory_limit is None else lambda: _limit_memory(memory_limit),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"aimi serve exited: {(tmp / f'serve-{port}.log').read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return Server(base, key, name, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("aimi serve did not become ready in 120 s")


def _limit_memory(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def stop_server(server: Server) -> int:
    server.process.terminate()
    try:
        return server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real `aimi serve` with the embedded model for the whole session, content safety off: the
    SDK tests on it judge the wire, and a sampled answer may be withheld now and then by design (the
    classifier's false-positive target on everyday text is 0.5 %; SmolLM2's own greetings measured
    3 in 3,000). Content safety, on by default, has servers of its own (tests/e2e/test_content_safety.py,
    test_js_sdk.py, test_platform.py, test_upstream.py, tests/web/test_browser.py)."""
    running = start_server(tmp_path_factory.mktemp("serve"), "--no-safety")
    yield running
    stop_server(running)
