"""Field types shared by the service groups' request models: the documents' loose types
(numbers as strings and the reverse, keys with spaces) read in one place."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from bhuktani import money
from bhuktani.errors import FieldErrors, ReferenceMissing, validation_error

REFERENCE_PATTERN = r"[A-Za-z0-9_.:-]{1,50}"
_REFERENCE = re.compile(REFERENCE_PATTERN)
MAX_ID = 2**63 - 1


def _amount(value: Any) -> int:
    try:
        return money.to_paisa(value)
    except money.AmountError as exc:
        raise ValueError(str(exc)) from None


_INTEGER = re.compile(r"-?[0-9]{1,19}")
# Around a number sent as a string: ASCII white space only (as money.to_paisa).
_SPACE = " \t\r\n"


def loose_int(value: Any) -> Any:
    """An integer sent as a string of ASCII digits is the integer; any other string is
    left for the model to refuse (int() would take "１", "٢" and "1_0")."""
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip(_SPACE)):
        return int(value.strip(_SPACE))
    return value


def _id_range(value: int) -> int:
    if not 0 <= value <= MAX_ID:
        raise ValueError(f"Must be between 0 and {MAX_ID}")
    return value


def _loose_str(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _reference(value: Any) -> Any:
    if isinstance(value, str) and not _REFERENCE.fullmatch(value):
        raise ValueError("Reference must be 1 to 50 characters of A-Z a-z 0-9 _ . : -")
    return value


# The schemas say what clients may send (numbers or strings); the models keep one type.
AmountPaisa = Annotated[int, BeforeValidator(_amount, json_schema_input_type=float | str)]
LooseId = Annotated[
    int,
    BeforeValidator(loose_int, json_schema_input_type=int | str),
    Field(strict=True),
    AfterValidator(_id_range),
]
LooseCode = Annotated[
    str,
    BeforeValidator(_loose_str, json_schema_input_type=str | int),
    Field(min_length=1, max_length=32),
]
Reference = Annotated[str, BeforeValidator(_reference), Field(max_length=50)]
Username = Annotated[str, Field(min_length=1, max_length=100)]
# A subscriber named by an id that documents send as a number or a string ("9099", 110871).
LooseUsername = Annotated[
    str,
    BeforeValidator(_loose_str, json_schema_input_type=str | int),
    Field(min_length=1, max_length=100),
]


class WireModel(BaseModel):
    """A request body: unknown keys ignored, `session id` read as `session_id`."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, frozen=True)

    token: str | None = Field(default=None, max_length=200)

    @model_validator(mode="before")
    @classmethod
    def _underscore_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {
                (key.strip().replace(" ", "_") if isinstance(key, str) else key): value
                for key, value in data.items()
            }
        return data


M = TypeVar("M", bound=WireModel)


def reference_present(data: dict[str, Any]) -> None:
    """1012 comes before any other validation error, as the documents list it."""
    if data.get("reference") in (None, ""):
        raise ReferenceMissing("Send a unique 'reference' with the request")


def parse(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors: FieldErrors = {}
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "body"
            message = str(error["msg"]).removeprefix("Value error, ")
            errors.setdefault(field, []).append(message)
        raise validation_error(errors) from None
