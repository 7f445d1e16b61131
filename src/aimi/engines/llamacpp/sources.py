"""What a GGUF file source must be: an existing file on this machine that starts like a GGUF."""

from __future__ import annotations

from pathlib import Path

from aimi.errors import InvalidRequest


def check_gguf(source: str) -> str:
    """The file's resolved path; refused when it is not a GGUF file here."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise InvalidRequest(
            f"The source '{source}' is neither a file on this machine nor an http(s) URL.", param="source"
        )
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise InvalidRequest(f"The source '{source}' is not a GGUF file.", param="source")
    return str(path.resolve())
