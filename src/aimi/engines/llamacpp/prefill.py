"""How many prompt tokens the next engine step evaluates: as many as the hardware allows when no
stream is waiting for its next token, and while streams run, as many as fit in the step time they
can bear (never fewer than a fixed chunk).

A step costs about `base + per_token * prompt_tokens`, where `base` is the time of a step that only
decodes (one token per running stream). Both are learnt from the steps themselves (exponential
moving averages), so the same rule gives 1,000-token chunks on a fast machine and 200-token chunks
on a slow one. Until the costs are known, streams get the fixed `streaming_chunk`.
"""

from __future__ import annotations

from dataclasses import dataclass

SMOOTHING = 0.2
"""Weight of the newest step in the moving averages."""


@dataclass
class PrefillBudget:
    streaming_chunk: int
    """Prompt tokens per step while streams run, until the step costs are known, and the fewest they
    get after: on a slow machine smaller chunks would cost throughput (every step is a pass over the
    weights for the streams) and make a long prompt wait longer for its first token."""
    max_chunk: int
    """Prompt tokens per step when no stream is running (the batch size)."""
    step_target_s: float
    """The longest a step may take while streams run: the inter-token latency they would see."""
    base_s: float | None = None
    """Time of a step that only decodes."""
    per_token_s: float | None = None
    """Time one prompt token adds to a step."""

    def tokens(self, streaming: int) -> int:
        """Prompt tokens for the next step, with `streaming` sequences decoding in it."""
        if streaming == 0:
            return self.max_chunk
        if self.per_token_s is None or self.per_token_s <= 0:
            return self.streaming_chunk
        room = (self.step_target_s - (self.base_s or 0.0)) / self.per_token_s
        return max(self.streaming_chunk, min(self.max_chunk, int(room)))

    def observe(self, prompt_tokens: int, streaming: int, seconds: float) -> None:
        """Learn from a step that evaluated `prompt_tokens` beside `streaming` decoding sequences."""
        if prompt_tokens == 0:
            if streaming:
                self.base_s = _average(self.base_s, seconds)
            return
        base = self.base_s if streaming and self.base_s is not None else 0.0
        self.per_token_s = _average(self.per_token_s, max(0.0, seconds - base) / prompt_tokens)


def _average(old: float | None, new: float) -> float:
    return new if old is None else old + SMOOTHING * (new - old)
