"""Per-deployment quotas: requests and tokens per minute over a sliding 60-second window.

A request reserves its tokens when it is admitted (prompt + `max_tokens`), so a burst cannot
overshoot, and settles them to the real count when it ends, so honest callers are not starved.
In-process by default; in Redis (one Lua script per decision, so several aimi processes share one
quota exactly) when `AIMI_REDIS_URL` is set.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from aimi.errors import InvalidRequest, RateLimited

WINDOW_S = 60.0


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int
    tokens_per_minute: int


@dataclass(frozen=True)
class Admission:
    """A reservation, and what the window has left after it."""

    id: str
    tokens: int
    remaining_requests: int
    remaining_tokens: int


class QuotaStore(Protocol):
    """Admits a request (or raises RateLimited with a Retry-After) and settles it later."""

    async def admit(self, deployment: str, limits: Limits, tokens: int) -> Admission: ...

    async def settle(self, deployment: str, admission: Admission, tokens: int) -> None: ...

    async def close(self) -> None: ...


def _check_fits(limits: Limits, tokens: int) -> None:
    if tokens > limits.tokens_per_minute:
        raise InvalidRequest(
            f"This request reserves {tokens} tokens (prompt + max_tokens), more than the deployment's "
            f"quota of {limits.tokens_per_minute} tokens per minute; lower max_tokens.",
            param="max_tokens",
        )


def _refusal(kind: str, wait_s: float, requests: int = 0, tokens: int = 0) -> RateLimited:
    seconds = max(1, math.ceil(wait_s))
    return RateLimited(
        f"Rate limit is exceeded ({kind} per minute for this deployment). Try again in {seconds} seconds.",
        retry_after=seconds,
        remaining_requests=requests,
        remaining_tokens=tokens,
    )


@dataclass
class _Entry:
    at: float
    id: str
    tokens: int


class MemoryQuotaStore:
    """One process's quotas."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, deque[_Entry]] = {}
        self._lock = asyncio.Lock()

    async def admit(self, deployment: str, limits: Limits, tokens: int) -> Admission:
        _check_fits(limits, tokens)
        async with self._lock:
            now = self._clock()
            window = self._windows.setdefault(deployment, deque())
            while window and window[0].at <= now - WINDOW_S:
                window.popleft()
            if len(window) + 1 > limits.requests_per_minute:
                used = sum(e.tokens for e in window)
                raise _refusal("requests", window[0].at + WINDOW_S - now, 0, limits.tokens_per_minute - used)
            used = sum(e.tokens for e in window)
            if used + tokens > limits.tokens_per_minute:
                freed, wait = 0, WINDOW_S
                for e in window:
                    freed += e.tokens
                    if used - freed + tokens <= limits.tokens_per_minute:
                        wait = e.at + WINDOW_S - now
                        break
                raise _refusal(
                    "tokens", wait, limits.requests_per_minute - len(window), limits.tokens_per_minute - used
                )
            entry = _Entry(now, uuid.uuid4().hex, tokens)
            window.append(entry)
            return Admission(
                entry.id,
                tokens,
                limits.requests_per_minute - len(window),
                limits.tokens_per_minute - used - tokens,
            )

    async def settle(self, deployment: str, admission: Admission, tokens: int) -> None:
        async with self._lock:
            for entry in self._windows.get(deployment, ()):
                if entry.id == admission.id:
                    entry.tokens = tokens
                    return

    async def close(self) -> None:
        return None


_ADMIT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local window, rpm, tpm, tokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local id = ARGV[5]
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
for _, old in ipairs(expired) do redis.call('HDEL', KEYS[2], old) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local count = #entries / 2
if count + 1 > rpm then
  local used_r = 0
  for i = 1, #entries, 2 do used_r = used_r + tonumber(redis.call('HGET', KEYS[2], entries[i]) or '0') end
  return {0, 'requests', tostring(tonumber(entries[2]) + window - now), 0, tpm - used_r}
end
local used = 0
local amounts = {}
for i = 1, #entries, 2 do
  local amount = tonumber(redis.call('HGET', KEYS[2], entries[i]) or '0')
  amounts[#amounts + 1] = {amount, tonumber(entries[i + 1])}
  used = used + amount
end
if used + tokens > tpm then
  local freed, wait = 0, window
  for _, e in ipairs(amounts) do
    freed = freed + e[1]
    if used - freed + tokens <= tpm then wait = e[2] + window - now break end
  end
  return {0, 'tokens', tostring(wait), rpm - count, tpm - used}
end
redis.call('ZADD', KEYS[1], now, id)
redis.call('HSET', KEYS[2], id, tokens)
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 2000))
redis.call('PEXPIRE', KEYS[2], math.ceil(window * 2000))
return {1, '', '0', rpm - count - 1, tpm - used - tokens}
"""

_SETTLE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""


class RedisQuotaStore:
    """Quotas shared by every aimi process that points at the same Redis."""

    def __init__(self, url: str, *, prefix: str = "aimi:quota") -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url)
        self._prefix = prefix
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)

    def _keys(self, deployment: str) -> list[str]:
        return [f"{self._prefix}:{deployment}:log", f"{self._prefix}:{deployment}:tokens"]

    async def admit(self, deployment: str, limits: Limits, tokens: int) -> Admission:
        _check_fits(limits, tokens)
        entry = uuid.uuid4().hex
        ok, kind, wait, left_requests, left_tokens = await self._admit(
            keys=self._keys(deployment),
            args=[WINDOW_S, limits.requests_per_minute, limits.tokens_per_minute, tokens, entry],
        )
        if not int(ok):
            raise _refusal(
                kind.decode() if isinstance(kind, bytes) else str(kind),
                float(wait),
                int(left_requests),
                int(left_tokens),
            )
        return Admission(entry, tokens, int(left_requests), int(left_tokens))

    async def settle(self, deployment: str, admission: Admission, tokens: int) -> None:
        await self._settle(keys=self._keys(deployment)[1:], args=[admission.id, tokens])

    async def close(self) -> None:
        await self._redis.aclose()
