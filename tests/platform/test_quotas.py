"""`aimi.platform.quotas`: requests and tokens per minute, reserved at admission and settled at the
end, in process and in Redis (one quota shared exactly by every client of the same Redis)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from aimi.errors import InvalidRequest, RateLimited
from aimi.platform.quotas import Admission, Limits, MemoryQuotaStore, QuotaStore, RedisQuotaStore

pytestmark = pytest.mark.anyio

REDIS_URL = os.environ.get("AIMI_TEST_REDIS_URL", "")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="AIMI_TEST_REDIS_URL not set: run scripts/services.sh")
PLENTY = 1_000_000


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def forget(prefix: str) -> None:
    """Delete a test's keys from the shared Redis."""
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    async for key in client.scan_iter(f"{prefix}:*"):
        await client.delete(key)
    await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[QuotaStore]:
    """Each store, with a Redis key prefix of this test's own."""
    if request.param == "memory":
        yield MemoryQuotaStore()
        return
    prefix = f"aimi-test:{uuid.uuid4().hex}"
    redis_store = RedisQuotaStore(REDIS_URL, prefix=prefix)
    try:
        yield redis_store
    finally:
        await redis_store.close()
        await forget(prefix)


@pytest.fixture
async def two_redis_stores() -> AsyncIterator[tuple[RedisQuotaStore, RedisQuotaStore]]:
    """Two stores with clients of their own on one Redis, as two aimi processes have."""
    if not REDIS_URL:
        pytest.skip("AIMI_TEST_REDIS_URL not set: run scripts/services.sh")
    prefix = f"aimi-test:{uuid.uuid4().hex}"
    first, second = RedisQuotaStore(REDIS_URL, prefix=prefix), RedisQuotaStore(REDIS_URL, prefix=prefix)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()
        await forget(prefix)


async def admit_all(
    stores: Sequence[QuotaStore], count: int, limits: Limits, tokens: int = 1, deployment: str = "d"
) -> tuple[list[Admission], list[RateLimited]]:
    """`count` admissions at once, spread over `stores` in turn: who got in, who was refused."""
    outcomes = await asyncio.gather(
        *(stores[i % len(stores)].admit(deployment, limits, tokens) for i in range(count)),
        return_exceptions=True,
    )
    admitted = [o for o in outcomes if isinstance(o, Admission)]
    refused = [o for o in outcomes if isinstance(o, RateLimited)]
    assert len(admitted) + len(refused) == count, outcomes
    return admitted, refused


# -- both stores ---------------------------------------------------------------------------------


async def test_concurrent_admissions_get_exactly_the_requests_per_minute(store: QuotaStore) -> None:
    admitted, refused = await admit_all([store], 20, Limits(requests_per_minute=5, tokens_per_minute=PLENTY))
    assert len(admitted) == 5
    assert len(refused) == 15
    assert sorted(a.remaining_requests for a in admitted) == [0, 1, 2, 3, 4]
    assert all("requests per minute" in r.message for r in refused)


async def test_each_admission_says_what_the_window_has_left(store: QuotaStore) -> None:
    limits = Limits(requests_per_minute=3, tokens_per_minute=100)
    first = await store.admit("d", limits, 10)
    second = await store.admit("d", limits, 25)
    assert (first.tokens, first.remaining_requests, first.remaining_tokens) == (10, 2, 90)
    assert (second.tokens, second.remaining_requests, second.remaining_tokens) == (25, 1, 65)
    assert first.id != second.id


async def test_tokens_are_reserved_at_admission_so_a_burst_cannot_overshoot(store: QuotaStore) -> None:
    admitted, refused = await admit_all([store], 12, Limits(PLENTY, tokens_per_minute=100), tokens=30)
    assert len(admitted) == 3
    assert sorted(a.remaining_tokens for a in admitted) == [10, 40, 70]
    assert all("tokens per minute" in r.message for r in refused)


async def test_settling_to_fewer_tokens_than_reserved_frees_room(store: QuotaStore) -> None:
    limits = Limits(PLENTY, tokens_per_minute=100)
    first = await store.admit("d", limits, 80)
    with pytest.raises(RateLimited):
        await store.admit("d", limits, 30)
    await store.settle("d", first, 20)
    after = await store.admit("d", limits, 30)
    assert after.remaining_tokens == 50


async def test_settling_to_more_tokens_than_reserved_counts_them_all(store: QuotaStore) -> None:
    limits = Limits(PLENTY, tokens_per_minute=100)
    first = await store.admit("d", limits, 10)
    await store.settle("d", first, 90)
    with pytest.raises(RateLimited):
        await store.admit("d", limits, 20)
    assert (await store.admit("d", limits, 10)).remaining_tokens == 0


async def test_settling_an_unknown_admission_changes_nothing(store: QuotaStore) -> None:
    limits = Limits(PLENTY, tokens_per_minute=100)
    await store.admit("d", limits, 50)
    await store.settle("d", Admission("not-an-admission", 50, 0, 0), 0)
    await store.settle("elsewhere", Admission("not-an-admission", 50, 0, 0), 0)
    assert (await store.admit("d", limits, 10)).remaining_tokens == 40


@pytest.mark.parametrize("limits", [Limits(1, PLENTY), Limits(PLENTY, 10)], ids=["requests", "tokens"])
async def test_a_refusal_says_when_to_retry_in_whole_seconds_of_at_least_one(
    store: QuotaStore, limits: Limits
) -> None:
    await store.admit("d", limits, 10)
    with pytest.raises(RateLimited) as refused:
        await store.admit("d", limits, 10)
    retry_after = refused.value.retry_after
    assert isinstance(retry_after, int)
    assert 1 <= retry_after <= 60
    assert f"Try again in {retry_after} seconds" in refused.value.message
    assert (refused.value.status, refused.value.code) == (429, "429")


async def test_a_request_bigger_than_the_tokens_per_minute_is_invalid_not_rate_limited(
    store: QuotaStore,
) -> None:
    limits = Limits(PLENTY, tokens_per_minute=100)
    with pytest.raises(InvalidRequest) as refused:
        await store.admit("d", limits, 101)
    assert refused.value.status == 400
    assert refused.value.param == "max_tokens"
    assert "100 tokens per minute" in refused.value.message
    assert (await store.admit("d", limits, 100)).remaining_tokens == 0


async def test_deployments_have_quotas_of_their_own(store: QuotaStore) -> None:
    limits = Limits(1, PLENTY)
    await store.admit("one", limits, 1)
    await store.admit("two", limits, 1)
    with pytest.raises(RateLimited):
        await store.admit("one", limits, 1)


# -- in process: the window, against a clock moved by hand ---------------------------------------


async def test_a_request_leaves_the_window_sixty_seconds_after_its_admission() -> None:
    clock = Clock()
    store = MemoryQuotaStore(clock)
    limits = Limits(2, PLENTY)
    await store.admit("d", limits, 1)
    clock.now += 30
    await store.admit("d", limits, 1)
    clock.now += 15
    with pytest.raises(RateLimited) as refused:
        await store.admit("d", limits, 1)
    assert refused.value.retry_after == 15
    clock.now += 15
    assert (await store.admit("d", limits, 1)).remaining_requests == 0


@pytest.mark.parametrize(("elapsed", "retry_after"), [(0.5, 60), (59.0, 1), (59.8, 1), (59.999, 1)])
async def test_retry_after_rounds_the_wait_up(elapsed: float, retry_after: int) -> None:
    clock = Clock()
    store = MemoryQuotaStore(clock)
    await store.admit("d", Limits(1, PLENTY), 1)
    clock.now += elapsed
    with pytest.raises(RateLimited) as refused:
        await store.admit("d", Limits(1, PLENTY), 1)
    assert refused.value.retry_after == retry_after


async def test_a_token_refusal_waits_until_enough_reserved_tokens_leave_the_window() -> None:
    clock = Clock()
    store = MemoryQuotaStore(clock)
    limits = Limits(PLENTY, 100)
    await store.admit("d", limits, 50)
    clock.now += 10
    await store.admit("d", limits, 40)
    clock.now += 10
    with pytest.raises(RateLimited) as refused:
        await store.admit("d", limits, 30)
    assert refused.value.retry_after == 40  # when the first 50 leave, 40 + 30 fit
    clock.now += 40
    assert (await store.admit("d", limits, 30)).remaining_tokens == 30


# -- in Redis: several processes, one quota ------------------------------------------------------


async def test_two_redis_clients_share_one_quota_exactly(
    two_redis_stores: tuple[RedisQuotaStore, RedisQuotaStore],
) -> None:
    admitted, refused = await admit_all(two_redis_stores, 20, Limits(5, PLENTY))
    assert (len(admitted), len(refused)) == (5, 15)
    assert sorted(a.remaining_requests for a in admitted) == [0, 1, 2, 3, 4]


async def test_what_one_redis_client_admits_the_other_counts(
    two_redis_stores: tuple[RedisQuotaStore, RedisQuotaStore],
) -> None:
    first, second = two_redis_stores
    limits = Limits(2, 100)
    await first.admit("d", limits, 60)
    assert (await second.admit("d", limits, 40)).remaining_tokens == 0
    with pytest.raises(RateLimited):
        await first.admit("d", limits, 1)


async def test_a_reservation_made_through_one_redis_client_can_be_settled_through_the_other(
    two_redis_stores: tuple[RedisQuotaStore, RedisQuotaStore],
) -> None:
    first, second = two_redis_stores
    limits = Limits(PLENTY, 100)
    reserved = await first.admit("d", limits, 80)
    with pytest.raises(RateLimited):
        await second.admit("d", limits, 30)
    await second.settle("d", reserved, 20)
    assert (await second.admit("d", limits, 30)).remaining_tokens == 50
