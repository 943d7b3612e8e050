"""JSON values that a store can keep and read back as they were: finite numbers, and text
(keys and strings) that can be stored (see :func:`personalizer._input.text_problem`)."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, JsonValue
from pydantic_core import to_jsonable_python

from personalizer._input import text_problem

__all__ = ["JsonObject", "json_problem"]


def json_problem(value: object, where: str) -> str | None:
    """What keeps ``value`` (plain JSON types; tuples count as lists) from being stored and
    read back as it was: a number that is not finite, or text (a key or a string) that
    cannot be stored."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {value}, not a finite number"
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else f"{where}: the text {problem}"
    if isinstance(value, dict):
        for k, v in value.items():
            key = text_problem(k)
            if key is not None:
                return f"{where}: a key {key}"
            problem = json_problem(v, f"{where}.{k}")
            if problem is not None:
                return problem
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            problem = json_problem(v, f"{where}.{i}")
            if problem is not None:
                return problem
    return None


def _as_json(value: object) -> object:
    """A settings object (a pydantic model, a mapping with tuples in it) as plain JSON types."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return to_jsonable_python(value) if value is not None else None


JsonObject = Annotated[dict[str, JsonValue], BeforeValidator(_as_json)]
"""A JSON object of settings; a pydantic model (``GenerationOptions``, a strategy) is taken as
its JSON form."""
