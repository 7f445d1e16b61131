"""No key reaches a log (`aimi.api.access_log`): a real `aimi serve` at log level info, whose access log
records every request, is sent keys in headers, as bearer tokens and in query strings; none of them
is in what it wrote."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

ADMIN_KEY = "AdminKeyForTheLogTest0123456789a"
SERVED_KEY = "ServedKeyForTheLogTest0123456789"
HI = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    server = start_server(
        tmp_path, "--log-level", "info", key=SERVED_KEY, name="logged", env={"AIMI_ADMIN_KEY": ADMIN_KEY}
    )
    log = tmp_path / f"serve-{server.base_url.rsplit(':', 1)[1]}.log"
    try:
        yield server, log
    finally:
        stop_server(server)


def test_no_key_sent_in_a_query_string_or_a_header_is_written_to_the_log(
    logged: tuple[Server, Path],
) -> None:
    server, log = logged
    admin = {"api-key": ADMIN_KEY}
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        created = http.post(
            "/api/deployments",
            json={"project": "p", "model": "SmolLM2-135M-Instruct", "name": "second"},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        primary, secondary = (k["key"] for k in created.json()["keys"])
        regenerated = http.post("/api/deployments/second/keys/secondary/regenerate", headers=admin).json()[
            "key"
        ]
        keys = [ADMIN_KEY, primary, secondary, regenerated]

        # Keys in the query string: aimi never reads them there, but a client may still send them.
        assert http.get(f"/info?api-key={primary}").status_code == 401
        assert (
            http.get(f"/deployments/second/info?api-version=2024-05-01-preview&api-key={primary}").status_code
            == 401
        )
        assert http.get(f"/info?subscription-key={regenerated}&token={secondary}").status_code == 401
        assert http.get(f"/info?api%2Dkey={primary}&x=%ZZ").status_code == 401
        assert http.get(f"/api/usage?since=1h&api-key={ADMIN_KEY}").status_code == 401
        assert http.get(f"/metrics?api-key={ADMIN_KEY}").status_code == 401
        assert http.get(f"/nowhere?api-key={primary}").status_code == 404
        # Keys where they belong, and a wrong one.
        assert http.post("/chat/completions", json=HI, headers={"api-key": primary}).status_code == 200
        bearer = {"authorization": f"Bearer {regenerated}"}
        assert http.post("/v1/chat/completions", json=HI, headers=bearer).status_code == 200
        assert http.get("/api/usage", params={"since": "1h"}, headers=admin).status_code == 200
        assert http.get("/metrics", headers=admin).status_code == 200
        assert http.get("/info", headers={"api-key": secondary + "x"}).status_code == 401
        served = http.post(
            "/chat/completions", json=HI, headers={"api-key": SERVED_KEY, "x-api-key": SERVED_KEY}
        )
        assert served.status_code == 200
    stop_server(server)

    text = log.read_text(errors="replace")
    assert '"GET /info?api-key=*** HTTP/1.1" 401' in text  # the access log was on, and redacted
    assert "/deployments/second/info?api-version=2024-05-01-preview&api-key=***" in text
    assert "/api/usage?since=1h&api-key=***" in text
    for key in keys:
        assert key not in text
    # The key given on the command line is printed once in the start-up banner, by design (the
    # operator chose it); it must be nowhere else.
    elsewhere = [line for line in text.splitlines() if not line.lstrip().startswith(("key:", "try it:"))]
    assert not [line for line in elsewhere if SERVED_KEY in line]
