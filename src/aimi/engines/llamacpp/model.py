"""A loaded GGUF model and its vocabulary: native handles and the lookups built on them."""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp as ll

from aimi.engines.base import ModelInfo
from aimi.errors import EngineError

log = logging.getLogger("aimi.engines.llamacpp")

_GGML_LOG_LEVEL_ERROR = 4
SPELLED_TEXTS = 4096
"""Tokenizations `LlamaModel.tokens_of` remembers (short texts: a few hundred KB)."""
_log_callback: Any = None  # the C side holds a raw pointer; keep the Python object alive


def _install_log_sink() -> None:
    """Route llama.cpp's own logging to Python logging, errors only (it is chatty on stderr)."""
    global _log_callback
    if _log_callback is not None:
        return

    def sink(level: int, text: bytes | None, _user: ctypes.c_void_p) -> None:
        if level == _GGML_LOG_LEVEL_ERROR and text:
            log.error("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

    _log_callback = ll.llama_log_callback(sink)
    ll.llama_log_set(_log_callback, ctypes.c_void_p(0))


class LlamaModel:
    """Owns `llama_model*`; knows the vocabulary. Read-only after load, so safe to share."""

    def __init__(self, path: Path, *, on_progress: Callable[[float], None] | None = None) -> None:
        if not path.is_file():
            raise EngineError(f"model file not found: {path}")
        _install_log_sink()
        ll.llama_backend_init()
        params = ll.llama_model_default_params()
        params.n_gpu_layers = 0
        progress_cb = None
        if on_progress is not None:

            def progress(value: float, _user: ctypes.c_void_p) -> bool:
                on_progress(float(value))
                return True

            progress_cb = ll.llama_progress_callback(progress)
            params.progress_callback = progress_cb
        self.path = path
        self.ptr = ll.llama_model_load_from_file(str(path).encode(), params)
        if not self.ptr:
            raise EngineError(f"llama.cpp could not load {path} (is it a GGUF file?)")
        self.vocab = ll.llama_model_get_vocab(self.ptr)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = ll.llama_model_n_ctx_train(self.ptr)
        self.eog_tokens = frozenset(t for t in range(self.n_vocab) if ll.llama_vocab_is_eog(self.vocab, t))
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._lock = threading.Lock()
        self._spelled: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._byte_tokens: tuple[dict[int, int], bool] | None = None

    def close(self) -> None:
        if self.ptr:
            ll.llama_model_free(self.ptr)
            self.ptr = None

    # -- vocabulary ------------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (ll.llama_token * capacity)()
        n = ll.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_bos, special)
        if n < 0:
            capacity = -n
            buf = (ll.llama_token * capacity)()
            n = ll.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_bos, special)
        return list(buf[:n])

    def tokens_of(self, text: str) -> tuple[int, ...]:
        """`tokenize(text)` without BOS or special tokens, remembered: llama.cpp spends ~45 us on
        even one character, and jump-forward tokenizes the same keys again and again."""
        with self._lock:
            found = self._spelled.get(text)
            if found is not None:
                self._spelled.move_to_end(text)
                return found
        found = tuple(self.tokenize(text, add_bos=False, special=False))
        with self._lock:
            self._spelled[text] = found
            if len(self._spelled) > SPELLED_TEXTS:
                self._spelled.popitem(last=False)
        return found

    def piece(self, token: int, *, special: bool = False) -> bytes:
        key = (token, special)
        cached = self._pieces.get(key)
        if cached is not None:
            return cached
        buf = ctypes.create_string_buffer(64)
        n = ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        piece = buf.raw[:n]
        self._pieces[key] = piece
        return piece

    def byte_tokens(self) -> tuple[dict[int, int], bool]:
        """A token for each byte value that one token spells alone, and whether every byte some
        token starts with has one (a scan of the vocabulary, ~0.2 s, once; for jump-forward)."""
        with self._lock:
            if self._byte_tokens is None:
                single: dict[int, int] = {}
                first: set[int] = set()
                buf = ctypes.create_string_buffer(256)
                for token in range(self.n_vocab):
                    n = ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
                    if n == 0:
                        continue  # a control token spells nothing
                    first.add(buf.raw[0] if n > 0 else self.piece(token)[0])
                    if n == 1:
                        single.setdefault(buf.raw[0], token)
                self._byte_tokens = single, first <= single.keys()
            return self._byte_tokens

    def metadata(self) -> dict[str, str]:
        out: dict[str, str] = {}
        buf = ctypes.create_string_buffer(4096)
        for i in range(ll.llama_model_meta_count(self.ptr)):
            if ll.llama_model_meta_key_by_index(self.ptr, i, buf, len(buf)) < 0:
                continue
            key = buf.value.decode("utf-8", "replace")
            if key.startswith("tokenizer.ggml.") and key not in (
                "tokenizer.ggml.model",
                "tokenizer.ggml.pre",
            ):
                continue  # the vocabulary arrays: large and not useful as strings
            if ll.llama_model_meta_val_str_by_index(self.ptr, i, buf, len(buf)) >= 0:
                out[key] = buf.value.decode("utf-8", "replace")
        return out

    def chat_template(self) -> str | None:
        raw = ll.llama_model_chat_template(self.ptr, None)
        return raw.decode("utf-8") if raw else None

    def info(self, *, context_length: int) -> ModelInfo:
        meta = self.metadata()
        bos = ll.llama_vocab_bos(self.vocab)
        eos = ll.llama_vocab_eos(self.vocab)
        name = meta.get("general.name") or self.path.stem
        provider = meta.get("general.organization") or meta.get("general.author") or "aimi"
        return ModelInfo(
            name=name,
            provider=provider,
            context_length=context_length,
            chat_template=self.chat_template(),
            bos_token=self.piece(bos, special=True).decode("utf-8", "replace") if bos >= 0 else "",
            eos_token=self.piece(eos, special=True).decode("utf-8", "replace") if eos >= 0 else "",
            add_bos=bool(ll.llama_vocab_get_add_bos(self.vocab)),
            vocab_size=self.n_vocab,
            metadata=meta,
        )
