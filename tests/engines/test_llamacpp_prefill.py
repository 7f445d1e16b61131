from aimi.engines.llamacpp.prefill import PrefillBudget


def budget(**kw: float) -> PrefillBudget:
    return PrefillBudget(streaming_chunk=128, max_chunk=2048, step_target_s=0.15, **kw)  # type: ignore[arg-type]


def test_a_step_with_no_stream_running_takes_the_largest_chunk() -> None:
    assert budget().tokens(streaming=0) == 2048
    assert budget(base_s=0.04, per_token_s=0.01).tokens(streaming=0) == 2048


def test_streams_get_the_fixed_chunk_until_the_step_costs_are_known() -> None:
    assert budget().tokens(streaming=3) == 128


def test_beside_streams_the_chunk_fills_the_step_time_they_can_bear() -> None:
    # 40 ms to decode the streams, 0.5 ms a prompt token: 110 ms of room is 220 tokens
    assert budget(base_s=0.04, per_token_s=0.0005).tokens(streaming=8) in (219, 220)
    # a machine ten times faster gets ten times the chunk, up to the batch size
    assert budget(base_s=0.004, per_token_s=0.00005).tokens(streaming=8) == 2048


def test_on_a_slow_machine_the_chunk_never_falls_below_the_fixed_one() -> None:
    # smaller chunks would cost throughput (a pass over the weights per step) and first tokens
    assert budget(base_s=0.2, per_token_s=0.001).tokens(streaming=8) == 128


def test_the_costs_are_learnt_from_the_steps() -> None:
    b = budget()
    b.observe(prompt_tokens=0, streaming=8, seconds=0.04)  # decode only: the base
    assert b.base_s == 0.04 and b.per_token_s is None
    b.observe(prompt_tokens=200, streaming=8, seconds=0.14)  # 0.1 s for 200 prompt tokens
    assert b.per_token_s is not None and abs(b.per_token_s - 0.0005) < 1e-12
    b.observe(prompt_tokens=1000, streaming=0, seconds=1.0)  # a prompt alone: 1 ms a token
    assert b.per_token_s is not None and 0.0005 < b.per_token_s < 0.001
    b.observe(prompt_tokens=0, streaming=8, seconds=0.08)
    assert b.base_s is not None and 0.04 < b.base_s < 0.08
