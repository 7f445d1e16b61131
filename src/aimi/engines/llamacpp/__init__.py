"""The embedded engine: llama.cpp through llama-cpp-python's low-level API.

`LlamaCppEngine` is imported on first use: the source checks beside it (`sources`, `embedded`) must
not load llama.cpp's library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aimi.engines.llamacpp.engine import LlamaCppEngine

__all__ = ["LlamaCppEngine"]


def __getattr__(name: str) -> Any:
    if name == "LlamaCppEngine":
        from aimi.engines.llamacpp.engine import LlamaCppEngine

        return LlamaCppEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
