"""The one error tree of aimi. Each class carries its HTTP status and wire `code`.

    AimiError
    ├── InvalidRequest                 400 invalid_request
    │   ├── MalformedJson              400 invalid_json
    │   ├── ExtraParametersNotAllowed  400 extra_parameters_not_allowed
    │   ├── ContentFiltered            400 content_filter          (carries the safety decision)
    │   └── ContextLengthExceeded      400 context_length_exceeded
    ├── Unauthorized                   401 Unauthorized
    ├── NotFound                       404 NotFound
    ├── MethodNotAllowed               405 MethodNotAllowed
    ├── Conflict                       409 Conflict
    ├── PayloadTooLarge                413 RequestEntityTooLarge
    ├── ParameterNotSupported          422 parameter_not_supported
    ├── RateLimited                    429 429                     (carries retry_after)
    ├── EngineError                    500 InternalServerError
    ├── EngineUnavailable              503 ServiceUnavailable      (carries retry_after)
    └── ClientGone                     499 client_closed_request   (never sent: the ledger's record)

`aimi.api.errors` maps this tree to the wire envelope, in one place. Nothing below `api/` knows HTTP
beyond these two class attributes; `ledger_status` says which status a request that ended one way or
another is recorded with.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from aimi.safety.policy import Decision


class AimiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "InternalServerError"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(AimiError):
    status = 400
    code = "invalid_request"


class MalformedJson(InvalidRequest):
    code = "invalid_json"


class ExtraParametersNotAllowed(InvalidRequest):
    code = "extra_parameters_not_allowed"

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(
            f"Extra parameters {names!r} are not allowed when extra-parameters is not set or set to be "
            "'error'. Set extra-parameters to 'pass-through' to pass to the model."
        )


class ContentFiltered(InvalidRequest):
    """The prompt was blocked by the deployment's content-safety policy."""

    code = "content_filter"

    def __init__(self, decision: Decision) -> None:
        super().__init__(
            "The response was filtered due to the prompt triggering Microsoft's content management policy. "
            "Please modify your prompt and retry.",
            param="prompt",
        )
        self.decision = decision


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class Unauthorized(AimiError):
    status = 401
    code = "Unauthorized"

    def __init__(self, message: str = "Auth token validation failed") -> None:
        super().__init__(message)


class NotFound(AimiError):
    status = 404
    code = "NotFound"


class MethodNotAllowed(AimiError):
    status = 405
    code = "MethodNotAllowed"


class Conflict(AimiError):
    status = 409
    code = "Conflict"


class PayloadTooLarge(AimiError):
    status = 413
    code = "RequestEntityTooLarge"


class ParameterNotSupported(AimiError):
    """Valid per the API, but this model or engine cannot honour it."""

    status = 422
    code = "parameter_not_supported"

    def __init__(self, message: str, *, param: str, value: Any = None) -> None:
        super().__init__(message, param=param)
        self.value = value


class RateLimited(AimiError):
    status = 429
    code = "429"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int,
        remaining_requests: int | None = None,
        remaining_tokens: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
        self.remaining_requests = remaining_requests
        self.remaining_tokens = remaining_tokens


class EngineError(AimiError):
    status = 500
    code = "InternalServerError"


class EngineUnavailable(AimiError):
    status = 503
    code = "ServiceUnavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ClientGone(AimiError):
    """The client went away before its answer was committed (nginx's 499): recorded, never sent."""

    status = 499
    code = "client_closed_request"


ANSWERED = 200
"""The status of a request that was answered (whatever its finish reason)."""


def ledger_status(error: BaseException | None) -> int:
    """The status a request that ended with `error` (None: answered) is recorded with: the error
    tree's status, `ClientGone`'s for a cancelled request, `AimiError`'s for anything unforeseen."""
    if error is None:
        return ANSWERED
    if isinstance(error, AimiError):
        return error.status
    if isinstance(error, asyncio.CancelledError):
        return ClientGone.status
    return AimiError.status
