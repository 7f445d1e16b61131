"""The `extra-parameters` header policy, as the Azure AI Model Inference service applies it."""

from __future__ import annotations

from typing import Any, Literal

from starlette.datastructures import Headers

from aimi.api.schemas.chat import KNOWN
from aimi.errors import ExtraParametersNotAllowed, InvalidRequest, ParameterNotSupported

Policy = Literal["error", "drop", "pass-through"]

_VALUES: dict[str, Policy] = {
    "error": "error",
    "drop": "drop",
    "ignore": "drop",  # the 2024 name of `drop`
    "pass-through": "pass-through",
    "pass_through": "pass-through",  # azure-ai-inference 1.0.0b1/b2 (`unknown-parameters`)
    "passthrough": "pass-through",  # as some documentation spells it
    "allow": "pass-through",  # the 2024 name of `pass-through`
}


def policy_from(headers: Headers, *, default: Policy) -> Policy:
    """`extra-parameters` wins over the legacy `unknown-parameters`, and over `extra-params` (the
    spelling of the seeds' JavaScript examples); values are case-insensitive."""
    for header in ("extra-parameters", "extra-params", "unknown-parameters"):
        raw = headers.get(header)
        if raw is None:
            continue
        policy = _VALUES.get(raw.strip().lower())
        if policy is None:
            raise InvalidRequest(
                f"Invalid value {raw!r} for header '{header}'; use 'error', 'drop' or 'pass-through'.",
                param=header,
            )
        return policy
    return default


def apply(body: dict[str, Any], *, standard: frozenset[str], policy: Policy) -> dict[str, Any]:
    """Judge the top-level keys outside `standard` (nested keys are never policed): `error` refuses
    them (400), `drop` removes them, `pass-through` keeps those aimi knows and refuses any other with
    a 422 naming it, as Mistral's API answers an unknown field."""
    extras = [key for key in body if key not in standard]
    if not extras:
        return body
    if policy == "error":
        raise ExtraParametersNotAllowed(extras)
    if policy == "drop":
        return {key: value for key, value in body.items() if key in standard}
    unknown = [key for key in extras if key not in KNOWN]
    if unknown:
        names = ", ".join(f"'{key}'" for key in unknown)
        which = f"parameters {names} are" if len(unknown) > 1 else f"parameter {names} is"
        raise ParameterNotSupported(
            f"The {which} not known, so not applied (send the header 'extra-parameters: drop' to "
            "have unknown parameters ignored).",
            param=unknown[0],
            value=body[unknown[0]],
        )
    return body
