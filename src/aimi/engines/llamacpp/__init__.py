"""The embedded engine: llama.cpp through llama-cpp-python's low-level API."""

from aimi.engines.llamacpp.engine import LlamaCppEngine

__all__ = ["LlamaCppEngine"]
