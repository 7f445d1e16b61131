"""`aimi serve`: load a model and serve it as a deployment."""

from __future__ import annotations

import asyncio
import logging
import shlex
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from aimi.api import access_log
from aimi.api.app import Started, create_app
from aimi.api.services import services_of
from aimi.settings import Settings


@click.command()
@click.option("--host", help="Address to listen on.  [default: 127.0.0.1; env AIMI_HOST]")
@click.option(
    "--port", type=int, help="Port to listen on (0: any free port).  [default: 8000; env AIMI_PORT]"
)
@click.option(
    "--model",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A GGUF file to serve.  [default: the embedded SmolLM2-135M-Instruct; env AIMI_MODEL]",
)
@click.option(
    "--name", help="Deployment name, part of the endpoint URL.  [default: from the model; env AIMI_NAME]"
)
@click.option(
    "--api-key",
    help="The served deployment's primary key.  [default: a random 32-character key, made once; "
    "env AIMI_API_KEY]",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where aimi keeps its data.  [default: ~/.local/share/aimi; env AIMI_DATA_DIR]",
)
@click.option(
    "--threads", type=int, help="CPU threads for the engine.  [default: all cores; env AIMI_THREADS]"
)
@click.option(
    "--context-size",
    type=int,
    help="Tokens one request may use, prompt + completion.  [default: 4096; env AIMI_CONTEXT_SIZE]",
)
@click.option("--parallel", type=int, help="Requests decoded together.  [default: 4; env AIMI_PARALLEL]")
@click.option(
    "--kv-cache",
    type=click.Choice(["per-slot", "shared"]),
    help="llama.cpp's KV cache: one stream per slot, or one pool for all slots (shared prefixes "
    "cost no copy, long prompts cost more attention).  [default: per-slot; env AIMI_KV_CACHE]",
)
@click.option(
    "--prompt-cache-mb",
    type=click.IntRange(min=0),
    help="Host memory for the KV states of conversations whose slot went to another request, restored "
    "when they come back (0: off).  [default: 1/8 of the machine's memory, at most 4096; "
    "env AIMI_PROMPT_CACHE_MB]",
)
@click.option(
    "--jump-forward/--no-jump-forward",
    default=None,
    help="Append the text a JSON schema or tool grammar forces (keys, function names) in one decode step "
    "instead of one step a token.  [default: on; env AIMI_JUMP_FORWARD]",
)
@click.option(
    "--tool-choice-auto",
    type=click.Choice(["model", "eager"]),
    help="With tools and tool_choice auto: let the model decide (model), or start each answer to a user "
    "message with a call (eager, for models too small to decide).  "
    "[default: model; env AIMI_TOOL_CHOICE_AUTO]",
)
@click.option(
    "--safety/--no-safety",
    default=None,
    help="Content safety for the served deployment (kept with it).  [default: on for a new one]",
)
@click.option(
    "--safety-ensemble",
    type=click.Choice(["classic", "semantic"]),
    help="The built-in content-safety filters: semantic (the semantic classifier) or classic (toxicity "
    "classifier and patterns); see docs/safety.md.  [default: semantic; env AIMI_SAFETY_ENSEMBLE]",
)
@click.option(
    "--ssl-certfile",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Serve HTTPS with this PEM certificate.  [env AIMI_SSL_CERTFILE]",
)
@click.option(
    "--ssl-keyfile",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The certificate's private key.  [env AIMI_SSL_KEYFILE]",
)
@click.option(
    "--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]), show_default=True
)
def serve(log_level: str, **flags: Any) -> None:
    """Serve a model behind the Azure AI Model Inference and Mistral chat APIs."""
    overrides = {k: v for k, v in flags.items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if settings.model is not None and not settings.model.is_file():
        raise click.UsageError(f"--model: no such file: {settings.model}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]loading model"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task("load", total=1.0)
    progress.start()
    started: list[Started] = []

    def on_ready(_app: object, info: Started) -> None:
        progress.stop()
        started.append(info)

    app = create_app(
        settings, on_progress=lambda value: progress.update(task, completed=value), on_ready=on_ready
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        log_config=access_log.log_config(),  # no key in a logged URL
        timeout_graceful_shutdown=_AFTER_DRAIN_S,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    )
    server = _Server(
        config,
        banner=lambda port: _banner(console, started[0] if started else None, settings, port),
        on_exit=lambda: services_of(app).begin_shutdown(),  # a no-op before start-up
    )
    try:
        server.run()
    finally:
        progress.stop()


_AFTER_DRAIN_S = 1
"""Once the engines are drained, how long the last responses have to write their final event."""


class _Server(uvicorn.Server):
    """uvicorn, plus: a banner once the socket is bound, and a drain before the shutdown.

    On the first SIGTERM or Ctrl-C the server stops being ready and answers new requests with 503
    while the engines drain (queued requests get 503 at once, running ones the grace period and then a
    final event); only then does uvicorn close the socket and shut down. A second signal shuts down
    at once (a second Ctrl-C does not even wait for the answers to be written)."""

    def __init__(
        self, config: uvicorn.Config, *, banner: Any, on_exit: Callable[[], Awaitable[None] | None]
    ) -> None:
        super().__init__(config)
        self._banner = banner
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._loop = asyncio.get_running_loop()
        if self.started and self.servers:
            port = self.servers[0].sockets[0].getsockname()[1]
            self._banner(port)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._draining or self._loop is None or self.should_exit:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._loop.call_soon_threadsafe(self._drain, sig, frame)

    def _drain(self, sig: int, frame: Any) -> None:
        drained = self._on_exit()
        if drained is None:
            super().handle_exit(sig, frame)
            return

        def drained_then_exit(future: asyncio.Future[None]) -> None:
            if not future.cancelled() and future.exception() is not None:
                logging.getLogger("aimi").error("draining failed", exc_info=future.exception())
            super(_Server, self).handle_exit(sig, frame)

        asyncio.ensure_future(drained).add_done_callback(drained_then_exit)


def _banner(console: Console, started: Started | None, settings: Settings, port: int) -> None:
    host = "localhost" if settings.host in ("0.0.0.0", "::") else settings.host
    scheme = "https" if settings.ssl_certfile else "http"
    base = f"{scheme}://{host}:{port}"
    target = started.target if started else None
    if target is None:
        console.print(f"[bold green]aimi[/] is serving every deployment at {base}/deployments/<name>")
    else:
        deployment = target.deployment
        endpoint = f"{base}/deployments/{deployment.name}"
        key = (
            target.key
            or f"(ends in {target.key_hint}; shown when it was made, `aimi keys regenerate` makes a new one)"
        )
        body = '{"messages":[{"role":"user","content":"Hello!"}]}'
        curl = (
            f"curl {endpoint}/chat/completions -H 'api-key: {target.key or '<key>'}' "
            f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
        )
        what = f"[bold]{deployment.model}[/] as deployment [bold]{deployment.name}[/]"
        console.print(f"[bold green]aimi[/] is serving {what}")
        console.print(f"  endpoint: {endpoint}")
        console.print(f"  key:      {key}")
        console.print(f"  try it:   {curl}", soft_wrap=True)
    if started is not None and started.admin_key is not None:
        console.print(f"  admin key for {base}/api/ and the portal (shown once): {started.admin_key.key}")
    console.print("  Ctrl-C stops the server.")
