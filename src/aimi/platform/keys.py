"""Deployment keys: 32 characters, shown once, kept only as hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

KEY_LENGTH = 32
_ALPHABET = string.ascii_letters + string.digits


def new_key() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(KEY_LENGTH))


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def matches(key: str, stored: bytes) -> bool:
    return hmac.compare_digest(key_hash(key), stored)
