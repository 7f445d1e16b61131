"""The JavaScript examples of the Azure AI Foundry Mistral page, run with Node.js against a real `aimi serve`.

Each `tests/e2e/js/*.mjs` is one example of the seed's JavaScript zone (`@azure-rest/ai-inference`),
copied as literally as it runs; the endpoint and key come from `AZURE_INFERENCE_ENDPOINT` and
`AZURE_INFERENCE_CREDENTIAL`, as in the seed. Every difference from the seed is written at the top of
its script. The seed creates the client without `allowInsecureConnection`, so the JS client refuses
`http://`: the server here serves HTTPS with a throwaway self-signed certificate, which Node.js is told
to trust through `NODE_EXTRA_CA_CERTS` (the code is unchanged; trust comes from the environment).

Needs `node` (20 or later) and `npm ci --prefix tests/e2e/js`; the module is skipped without them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_KEY, Server, free_port, stop_server

JS_DIR = Path(__file__).parent / "js"
MODEL_NAME = "SmolLM2-135M-Instruct"
PROVIDER = "HuggingFaceTB"
# A script that has not finished by then is a failure (a slow machine still decodes SmolLM2-135M at
# several tokens a second, and no answer here may be longer than the context below).
SCRIPT_TIMEOUT_S = 420
# The seed's "Explore more parameters" example asks for `max_tokens: 2048`, which must fit next to its
# 27-token prompt; the examples that set no `max_tokens` get the rest of the context, so this also
# bounds how long their answers can get.
CONTEXT_SIZE = 2176
USAGE = re.compile(r"\{\s*prompt_tokens: (\d+),\s*completion_tokens: (\d+),\s*total_tokens: (\d+)")
"""Node prints a short object on one line and a longer one (with `prompt_tokens_details`) on several."""
# The seed's line, `an` included.
THREAT_LINE = "Your request triggered an content_filter error:"
NODE = shutil.which("node")


def _missing() -> str | None:
    """Why the scripts cannot run here, or None."""
    if NODE is None:
        return "node (Node.js 20 or later) is not on PATH"
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True, check=False).stdout
    major = re.match(r"v(\d+)\.", version)
    if major is None or int(major.group(1)) < 20:
        return f"the Azure JS SDK needs Node.js 20 or later, found {version.strip() or 'an unknown version'}"
    if not (JS_DIR / "node_modules" / "@azure-rest" / "ai-inference").is_dir():
        return "tests/e2e/js/node_modules is absent: run `npm ci --prefix tests/e2e/js`"
    return None


MISSING = _missing()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]


@dataclass(frozen=True)
class Run:
    """What one script printed."""

    script: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.rstrip("\n").split("\n")

    def ok(self) -> Run:
        assert self.returncode == 0, f"{self.script} exited {self.returncode}:\n{self.stdout}\n{self.stderr}"
        return self


def start_https_server(tmp: Path, cert: Path, key: Path, *, safety: bool) -> Server:
    """`aimi serve` over HTTPS, eager tool calls (tests.conftest.start_server polls plain http://, so
    it cannot wait for this one)."""
    port = free_port()
    log_path = tmp / f"serve-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [sys.executable, "-m", "aimi", "serve", "--port", str(port), "--api-key", TEST_KEY,
         "--name", "smollm2", "--data-dir", str(tmp / "data"), "--log-level", "warning",
         "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--safety" if safety else "--no-safety",
         "--tool-choice-auto", "eager", "--context-size", str(CONTEXT_SIZE)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("AIMI_")},
    )  # fmt: skip
    base = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"aimi serve exited: {log_path.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1, verify=trust).status_code == 200:
                return Server(base, TEST_KEY, "smollm2", process)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"aimi serve did not become ready over HTTPS in 120 s: {log_path.read_text()}")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway localhost certificate and its key, which Node.js is told to trust."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is not on PATH (needed for a throwaway localhost certificate)")
    tmp = tmp_path_factory.mktemp("js-cert")
    cert, key = tmp / "c.pem", tmp / "k.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def https_server(
    tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]
) -> Iterator[tuple[Server, Path]]:
    """The HTTPS server the SDK examples run against, content safety off: they check the wire, and a
    sampled answer may now and then be withheld by design (docs/safety.md measures the rate)."""
    server = start_https_server(tmp_path_factory.mktemp("js-sdk"), *certificate, safety=False)
    yield server, certificate[0]
    stop_server(server)


@pytest.fixture(scope="module")
def guarded_server(
    tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]
) -> Iterator[tuple[Server, Path]]:
    """The HTTPS server the content-safety seed examples run against, content safety on."""
    server = start_https_server(tmp_path_factory.mktemp("js-sdk-guarded"), *certificate, safety=True)
    yield server, certificate[0]
    stop_server(server)


@pytest.fixture(scope="module")
def node(https_server: tuple[Server, Path]) -> Callable[[str], Run]:
    """Runs `tests/e2e/js/<name>.mjs` once (later calls get the same run) with the seed's variables."""
    return runner(*https_server)


@pytest.fixture(scope="module")
def guarded_node(guarded_server: tuple[Server, Path]) -> Callable[[str], Run]:
    """`node`, against the server with content safety on."""
    return runner(*guarded_server)


def runner(server: Server, cert: Path) -> Callable[[str], Run]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    env |= {
        "AZURE_INFERENCE_ENDPOINT": server.endpoint,
        "AZURE_INFERENCE_CREDENTIAL": server.key,
        "NODE_EXTRA_CA_CERTS": str(cert),
        "NO_PROXY": ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1", "localhost"])),
    }
    runs: dict[str, Run] = {}

    def run(name: str) -> Run:
        if name not in runs:
            done = subprocess.run(
                [str(NODE), f"{name}.mjs"],
                cwd=JS_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=SCRIPT_TIMEOUT_S,
                check=False,
            )
            runs[name] = Run(name, done.returncode, done.stdout, done.stderr)
        return runs[name]

    return run


def usage_of(run: Run) -> tuple[int, int, int]:
    """The `console.log(response.body.usage)` line, as Node.js prints the object."""
    found = USAGE.search(run.stdout)
    assert found, f"no usage in {run.script}'s output:\n{run.stdout}"
    prompt, completion, total = (int(n) for n in found.groups())
    assert prompt > 0
    assert completion > 0
    assert total == prompt + completion
    return prompt, completion, total


def content_model_usage(run: Run) -> tuple[str, str, tuple[int, int, int]]:
    """What the seed's response handling prints: the content (any number of lines), the model, the
    usage; the content must not be empty."""
    lines = run.ok().lines
    at = max(i for i, line in enumerate(lines) if line.startswith("{"))  # the usage object, printed last
    content = "\n".join(lines[: at - 1])
    assert content.strip(), f"{run.script} printed no content:\n{run.stdout}\n{run.stderr}"
    return content, lines[at - 1], usage_of(run)


def after(prefix: str, run: Run) -> str:
    """The text a `console.log(prefix + value)` printed (to the next harness line or the end)."""
    start = run.stdout.index(prefix) + len(prefix)
    return run.stdout[start:]


def test_info(node: Callable[[str], Run]) -> None:
    run = node("info").ok()
    assert json.loads(run.lines[-1]) == {
        "model_name": MODEL_NAME,
        "model_type": "chat-completions",
        "model_provider_name": PROVIDER,
    }


def test_complete_prints_content_model_and_usage(node: Callable[[str], Run]) -> None:
    _, model, _ = content_model_usage(node("complete"))
    assert model == MODEL_NAME


def test_streaming_prints_the_text_delta_by_delta(node: Callable[[str], Run]) -> None:
    run = node("streaming").ok()
    deltas = [line for line in run.lines if line]
    assert len(deltas) > 3, f"the answer did not come in pieces:\n{run.stdout}"
    assert "".join(run.lines).strip()


def test_more_parameters(node: Callable[[str], Run]) -> None:
    _, model, (_, completion, _) = content_model_usage(node("parameters"))
    assert model == MODEL_NAME
    assert completion <= 2048


def test_json_output_parses_when_finished(node: Callable[[str], Run]) -> None:
    run = node("json_output").ok()
    finish = after("finish_reason: ", run).split("\n", 1)[0]
    assert finish in ("stop", "length")
    content = after("content: ", run).split("\nparsed: ", 1)[0]
    assert content.strip()
    if finish == "stop":
        assert isinstance(json.loads(content), dict)
        assert "parsed: " in run.stdout


def test_extra_parameters_pass_logprobs_through(node: Callable[[str], Run]) -> None:
    run = node("extra_params").ok()
    content = run.stdout.split("\nlogprobs: ", 1)[0]
    assert content.strip()
    logprobs = json.loads(after("\nlogprobs: ", run))
    assert logprobs is not None, "logprobs: true with extra-params: passthrough came back without logprobs"
    assert logprobs["tokens"]
    assert len(logprobs["token_logprobs"]) == len(logprobs["tokens"])
    assert all(value <= 0 for value in logprobs["token_logprobs"])
    assert [entry["token"] for entry in logprobs["content"]] == logprobs["tokens"]


def test_safe_mode_prepends_the_safe_prompt(node: Callable[[str], Run]) -> None:
    _, _, (prompt, _, _) = content_model_usage(node("safe_mode"))
    plain_prompt, _, _ = usage_of(node("complete").ok())
    # The same conversation, plus Mistral's safety system prompt.
    assert prompt > plain_prompt + 20


def test_tools_call_get_flight_info_then_answer(node: Callable[[str], Run]) -> None:
    run = node("tools").ok()
    assert "Finish reason: tool_calls\n" in run.stdout
    calls = json.loads(after("Tool call: ", run).split("\n", 1)[0])
    assert len(calls) >= 1
    call = calls[0]
    assert call["type"] == "function"
    assert call["id"]
    assert call["function"]["name"] == "get_flight_info"
    arguments = json.loads(call["function"]["arguments"])
    assert isinstance(arguments["origin_city"], str)
    assert isinstance(arguments["destination_city"], str)
    origin, destination = arguments["origin_city"], arguments["destination_city"]
    compact: dict[str, Any] = {"separators": (",", ":"), "ensure_ascii": False}
    printed = json.dumps(arguments, **compact)
    assert f"Calling function get_flight_info with arguments {printed}\n" in run.stdout
    info = (
        f"There are no flights available from {origin} to {destination}. You should take a train, "
        "specially if it helps to reduce CO2 emissions."
    )
    assert f"-> {json.dumps({'info': info}, **compact)}\n" in run.stdout
    second = after("Second finish reason: ", run).split("\n", 1)[0]
    assert second in ("stop", "length")
    assert after("Answer: ", run).strip()


def test_content_safety_lets_knife_skills_through(guarded_server: tuple[Server, Path]) -> None:
    """The prompt always passes. The model's sampled answer is checked too, as a completion, and
    is withheld now and then (SmolLM2 rambles: 3 of 40 sampled answers, docs/safety.md), so the
    seed runs up to three times, each in a fresh runner, and one run must print an answer."""
    for _ in range(3):
        run = runner(*guarded_server)("content_safety").ok()
        assert "Your request triggered" not in run.stdout
        if run.stdout.strip():
            break
    assert run.stdout.strip(), f"the seed printed no answer three times:\n{run.stdout}\n{run.stderr}"


def test_content_safety_blocks_a_threat(guarded_node: Callable[[str], Run]) -> None:
    run = guarded_node("content_safety_threat").ok()
    # The seed's try/catch prints nothing: the REST client returns the 400 instead of throwing, the
    # TypeError on `response.body.choices[0]` lands in its catch, which has no `status_code` to see.
    assert run.lines[0] == "-- end of the seed's try/catch"
    assert run.lines[1] == "status: 400"
    assert run.lines[2] == THREAT_LINE
    assert run.lines[3].startswith("\t The response was filtered due to the prompt triggering")
    assert "content management policy" in run.lines[3]
