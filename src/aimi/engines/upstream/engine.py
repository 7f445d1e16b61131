"""`UpstreamEngine`: the Engine port over an OpenAI-compatible server's HTTP API (httpx)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx

from aimi.engines.base import Conversation, EngineStats, Event, Finish, ModelCard
from aimi.engines.upstream.answer import Answer, estimate_tokens
from aimi.engines.upstream.refusals import forbidden_fields, refusal
from aimi.engines.upstream.source import UpstreamSource
from aimi.errors import EngineError, EngineUnavailable, ParameterNotSupported

log = logging.getLogger("aimi.engines")

TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=60.0)
"""`read` is the longest silence between two chunks (a long prompt evaluates before the first)."""
WHOLE_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=60.0, pool=60.0)
"""For an answer asked for whole, the silence is the whole generation: no read limit (the client's
own patience bounds it; a client that goes away ends the request)."""
PROBE_TIMEOUT = httpx.Timeout(5.0)
"""Short: a failed probe holds up the loading of other deployments that much."""
_ADAPTABLE = frozenset({"stream_options", "seed"})
"""Fields a strict server may refuse that aimi can do without: usage then comes unasked (as the
Mistral API sends it) and the seed goes as Mistral's `random_seed`."""


class UpstreamEngine:
    """A model served by another server; that server templates, schedules and samples: the chat
    engine port."""

    port: Literal["chat"] = "chat"

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        provider: str = "upstream",
        context_length: int = 4096,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = TIMEOUT,
    ) -> None:
        """`name`, `provider` and `context_length` are the catalog offer's (the server's own context
        length wins where it reports one); `api_key` is sent as `Authorization: Bearer`."""
        self.source = UpstreamSource.parse(url)
        self._name = name
        self._provider = provider
        self._context_length = context_length
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._transport = transport
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._info: ModelCard | None = None
        self.model: str | None = None
        """The model id sent upstream, known once started."""
        self._live: set[httpx.Response] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping: asyncio.Future[None] | None = None
        self._ended = False
        self._unsent: set[str] = set()
        """Optional fields this server refused; they are not sent again."""
        self._requests = self._prompt_tokens = self._generated_tokens = 0

    @property
    def info(self) -> ModelCard:
        if self._info is None:
            raise EngineUnavailable("the upstream server has not been reached yet")
        return self._info

    async def start(self) -> None:
        """Reach the server and learn its model; unreachable or refusing, this raises saying why."""
        client = httpx.AsyncClient(headers=self._headers, timeout=self._timeout, transport=self._transport)
        try:
            model, context = await self._probe(client)
        except BaseException:
            await client.aclose()
            raise
        self._client, self.model = client, model
        self._info = ModelCard(
            name=self._name or model,
            provider=self._provider,
            context_length=context or self._context_length,
            metadata={"upstream.model": model},
        )

    async def _probe(self, client: httpx.AsyncClient) -> tuple[str, int | None]:
        try:
            response = await client.get(self.source.url("/v1/models"), timeout=PROBE_TIMEOUT)
            if response.status_code in (404, 405):  # no model list: an Azure AI Model Inference server
                response = await client.get(self.source.url("/info"), timeout=PROBE_TIMEOUT)
        except httpx.HTTPError as exc:
            log.warning("upstream %s: %s", self.source.base, _describe(exc))
            raise EngineUnavailable(f"the upstream server cannot be reached ({_describe(exc)})") from exc
        if response.is_error:
            raise refusal(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        listed = body.get("data") if isinstance(body, dict) else None
        if isinstance(listed, list):
            models = {str(m["id"]): m for m in listed if isinstance(m, dict) and m.get("id")}
            return self._choose(models)
        if isinstance(body, dict) and isinstance(body.get("model_name"), str):
            return self.source.model or body["model_name"], None
        raise EngineUnavailable(
            "the upstream server does not answer like an OpenAI-compatible one (no model list at "
            "GET /v1/models, no model at GET /info)"
        )

    def _choose(self, models: dict[str, dict[str, Any]]) -> tuple[str, int | None]:
        if self.source.model is not None:
            if models and self.source.model not in models:
                raise EngineUnavailable(
                    f"the upstream server does not serve the model '{self.source.model}' "
                    f"(it serves: {', '.join(sorted(models)[:20])})"
                )
            chosen = self.source.model
        else:
            by_offer = [m for m in models if self._name and m.lower() == self._name.lower()]
            if not models:
                raise EngineUnavailable("the upstream server lists no models; name one with #model=ID")
            chosen = by_offer[0] if by_offer else next(iter(models))
            if len(models) > 1 and not by_offer:
                log.warning(
                    "upstream %s serves %d models; using %s (name one with #model=ID in the source)",
                    self.source.base,
                    len(models),
                    chosen,
                )
        context = models.get(chosen, {}).get("max_model_len")  # vLLM says how long its context is
        return chosen, context if isinstance(context, int) and context > 0 else None

    async def stop(self, grace_s: float = 0.0) -> None:
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._shutdown(grace_s))
        await asyncio.shield(self._stopping)

    async def _shutdown(self, grace_s: float) -> None:
        if self._live and grace_s > 0:
            with contextlib.suppress(TimeoutError):  # past the grace, they are ended below
                await asyncio.wait_for(self._idle.wait(), grace_s)
        self._ended = True
        for response in list(self._live):
            await response.aclose()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def stats(self) -> EngineStats:
        return EngineStats(
            running=len(self._live),
            requests=self._requests,
            prompt_tokens=self._prompt_tokens,
            generated_tokens=self._generated_tokens,
        )

    def count_tokens(self, text: str) -> int:
        """An estimate: the server's tokenizer is not at hand."""
        return estimate_tokens(text)

    async def generate(self, request: Conversation) -> AsyncIterator[Event]:
        client = self._client
        if client is None or self._stopping is not None:
            raise EngineUnavailable("the upstream engine is not running")
        if not isinstance(request, Conversation):  # a caller that ignored the port's type
            raise EngineError("an upstream engine takes a conversation, not prompt token ids")
        self._requests += 1
        try:
            response = await self._open(client, request)
        except httpx.HTTPError as exc:
            log.warning("upstream %s: %s", self.source.base, _describe(exc))
            raise EngineUnavailable(f"the upstream server cannot be reached ({_describe(exc)})") from exc
        self._live.add(response)
        self._idle.clear()
        reading = Answer(request.estimated_prompt_tokens)
        failure: str | None = None
        interrupted = False
        try:
            async for event in reading.events(response):
                yield event
        except (httpx.HTTPError, httpx.StreamError) as exc:  # StreamError: closed by `stop`
            if self._ended:
                failure, interrupted = "the server is shutting down", reading.started
            elif not reading.started:
                log.warning("upstream %s: %s", self.source.base, _describe(exc))
                raise EngineUnavailable(f"the upstream server cannot be reached ({_describe(exc)})") from exc
            else:
                failure = f"the upstream server broke off the answer ({_describe(exc)})"
        finally:
            await response.aclose()  # early, this is what tells the server to stop generating
            self._live.discard(response)
            if not self._live:
                self._idle.set()
        for event in reading.end(failure, interrupted=interrupted):
            if isinstance(event, Finish):
                self._prompt_tokens += event.prompt_tokens
                self._generated_tokens += event.completion_tokens
            yield event

    async def _open(self, client: httpx.AsyncClient, request: Conversation) -> httpx.Response:
        """The streaming response, once the server accepts the request. A server that refuses fields
        it does not know (the Mistral API: 422 `extra_forbidden`) is asked again without the ones aimi
        can do without, and is not sent them again."""
        while True:
            body = self._body(request)
            sent = client.build_request(
                "POST",
                self.source.url("/v1/chat/completions"),
                json=body,
                timeout=httpx.USE_CLIENT_DEFAULT if request.streamed else WHOLE_TIMEOUT,
            )
            response = await client.send(sent, stream=True)
            if not response.is_error:
                return response
            try:
                await response.aread()
            finally:
                await response.aclose()
            refused = forbidden_fields(response) - self._unsent if response.status_code == 422 else set()
            if refused and refused <= _ADAPTABLE:
                log.info("upstream %s does not take %s; not sending them", self.source.base, sorted(refused))
                self._unsent |= refused
                continue
            if refused:
                field = sorted(refused - _ADAPTABLE)[0]
                raise ParameterNotSupported(
                    f"The upstream server does not support the parameter '{field}'.", param=field
                )
            raise refusal(response)

    def _body(self, conversation: Conversation) -> dict[str, Any]:
        s = conversation.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(conversation.messages),
            "stream": conversation.streamed,
            "temperature": s.temperature,
            "top_p": s.top_p,
        }
        optional = {
            "stream_options": {"include_usage": True} if conversation.streamed else None,
            "max_tokens": conversation.max_tokens,
            "presence_penalty": s.presence_penalty or None,
            "frequency_penalty": s.frequency_penalty or None,
            "seed": s.seed,
            "top_k": s.top_k or None,  # not OpenAI's, but vLLM's, llama-server's, Ollama's and aimi's
            "ignore_eos": s.ignore_eos or None,
            "logprobs": True if conversation.logprobs is not None else None,
            "top_logprobs": conversation.logprobs,
            "tools": list(conversation.tools) or None,
            "tool_choice": conversation.tool_choice if conversation.tools else None,
            "parallel_tool_calls": False
            if conversation.tools and not conversation.parallel_tool_calls
            else None,
            "response_format": conversation.response_format,
            "stop": list(conversation.stop) or None,
        }
        if "seed" in self._unsent:
            optional["random_seed"] = s.seed  # Mistral's name for it
        body.update({k: v for k, v in optional.items() if v is not None and k not in self._unsent})
        return body


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
