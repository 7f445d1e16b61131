"""Metering one request: quota admission before it runs, and after it ends (always, also when it
is aborted) quota settlement and its row in the usage ledger."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aimi.platform.catalog import Offer
from aimi.platform.deployments import Deployment
from aimi.platform.inflight import InFlight, Ticket
from aimi.platform.quotas import Admission, Limits, QuotaStore
from aimi.platform.usage import Progress, UsageEntry, UsageLedger

log = logging.getLogger("aimi.platform")


@dataclass(frozen=True)
class QuotaState:
    remaining_requests: int
    remaining_tokens: int


class DeploymentMeter:
    """Implements the pipeline's `Meter` port for one request on one deployment. With `inflight`,
    the request's ledger row is written when it is admitted and kept up to date while it runs."""

    def __init__(
        self,
        *,
        deployment: Deployment,
        offer: Offer,
        key_id: int | None,
        quotas: QuotaStore,
        ledger: UsageLedger,
        streamed: bool,
        inflight: InFlight | None = None,
    ) -> None:
        self._deployment = deployment
        self._offer = offer
        self._key_id = key_id
        self._quotas = quotas
        self._ledger = ledger
        self._streamed = streamed
        self._inflight = inflight
        self._admission: Admission | None = None
        self._ticket: Ticket | None = None
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._started = time.monotonic()
        self._arrived_at = datetime.now(UTC)
        self.quota: QuotaState | None = None

    async def admit(self, tokens: int, *, prompt_tokens: int = 0) -> QuotaState:
        """Reserve `tokens` (prompt + max_tokens) against the quota; raises RateLimited."""
        if self._inflight is not None:
            await self._inflight.room()  # the ledger's writer is far behind (a slow database)
        limits = Limits(self._deployment.requests_per_minute, self._deployment.tokens_per_minute)
        self._admission = await self._quotas.admit(self._deployment.name, limits, tokens)
        self.quota = QuotaState(self._admission.remaining_requests, self._admission.remaining_tokens)
        self._prompt_tokens = prompt_tokens
        if self._inflight is not None:
            entry = self._entry(prompt_tokens, 0, finish_reason=None, status=0, safety=None)
            self._ticket = self._inflight.begin(entry, admission=self._admission, live=self)
        return self.quota

    def progress(self, completion_tokens: int) -> None:
        self._completion_tokens = completion_tokens
        if self._ticket is not None and self._inflight is not None:
            self._inflight.moved_ticket(self._ticket)

    def snapshot(self) -> Progress:
        prompt, completion = self._prompt_tokens, self._completion_tokens
        return Progress(prompt, completion, self._offer.cost(prompt, completion))

    async def finish(
        self,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        finish_reason: str | None,
        status: int,
        safety: dict[str, Any] | None = None,
        cached_tokens: int = 0,
    ) -> None:
        """Settle the reservation to the tokens really used and record the ledger row. With
        `inflight`, the row is closed in the background: the answer does not wait for the commit,
        and the server's shutdown does."""
        used = prompt_tokens + completion_tokens
        try:
            if self._admission is not None:
                await self._quotas.settle(self._deployment.name, self._admission, used)
            entry = self._entry(
                prompt_tokens,
                completion_tokens,
                finish_reason=finish_reason,
                status=status,
                safety=safety,
                cached_tokens=cached_tokens,
            )
            if self._ticket is not None and self._inflight is not None:
                ticket, self._ticket = self._ticket, None
                self._inflight.end(ticket, entry)
            else:
                await asyncio.to_thread(self._ledger.record, entry)
        except Exception:  # metering must never break an answer already given; it is logged
            log.exception("could not meter a request on %s", self._deployment.name)

    def _entry(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        finish_reason: str | None,
        status: int,
        safety: dict[str, Any] | None,
        cached_tokens: int = 0,
    ) -> UsageEntry:
        return UsageEntry(
            deployment=self._deployment.name,
            project=self._deployment.project,
            model=self._offer.name,
            key_id=self._key_id,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish_reason,
            status=status,
            latency_ms=int((time.monotonic() - self._started) * 1000),
            streamed=self._streamed,
            cost=self._offer.cost(prompt_tokens, completion_tokens),
            safety=safety,
            cached_tokens=cached_tokens,
            arrived_at=self._arrived_at,
        )
