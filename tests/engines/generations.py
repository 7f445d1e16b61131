"""Running one generation to its end, for the engine tests."""

from __future__ import annotations

from aimi.engines.base import Engine, Finish, GenerationRequest, Token


async def run(engine: Engine, request: GenerationRequest) -> tuple[list[Token], Finish]:
    """The tokens of one generation, and its Finish."""
    tokens: list[Token] = []
    async for event in engine.generate(request):
        if isinstance(event, Token):
            tokens.append(event)
        else:
            return tokens, event
    raise AssertionError("no Finish event")
