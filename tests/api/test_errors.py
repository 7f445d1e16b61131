"""The error envelope (`aimi.api.errors`): the keys each kind of error carries."""

from __future__ import annotations

from aimi.api.errors import envelope
from aimi.errors import ExtraParametersNotAllowed, InvalidRequest, ParameterNotSupported


def test_an_error_carries_param_and_type_even_when_null_and_nothing_else() -> None:
    body = envelope(InvalidRequest("No.")).model_dump(mode="json")
    assert body == {
        "error": {"code": "invalid_request", "message": "No.", "status": 400, "param": None, "type": None}
    }


def test_a_refused_parameter_is_also_in_detail_as_fastapi_writes_it() -> None:
    body = envelope(ParameterNotSupported("Not here.", param="n", value=2)).model_dump(mode="json")
    assert body["detail"] == [
        {"loc": ["body", "n"], "input": 2, "msg": "Not here.", "type": "parameter_not_supported"}
    ]
    assert "innererror" not in body["error"]


def test_extra_parameters_repeat_the_message_in_detail() -> None:
    error = ExtraParametersNotAllowed(["foo"])
    assert envelope(error).model_dump(mode="json")["detail"] == error.message
