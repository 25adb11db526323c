"""Input rules shared by every boundary: text never holds U+0000 (PROTOCOL §2.1).

PostgreSQL cannot store a NUL in a text column (psycopg raises DataError for the whole statement,
and with group commit for everyone's batch), so NUL is refused where requests are validated:
`Text` for pydantic request schemas (WebSocket), DRF's CharField already refuses it (HTTP), and
`refuse_nul` for service-level checks (defence in depth)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, model_validator

NUL = "\x00"
_NUL_ESCAPE = b"\\u0000"  # how orjson writes a NUL inside a JSON string
NUL_MESSAGE = "Text must not contain the NUL character (U+0000)."


def has_nul(value: Any) -> bool:
    """True when any string in `value` (nested lists and dicts, keys included) holds a NUL.

    JSON-shaped input is first encoded (orjson, C speed): without the escape `\\u0000` in its text
    no string holds a NUL, which settles every ordinary request without a walk in Python. The walk
    (iterative, so input nested as deep as a JSON parser allows cannot exhaust the stack) decides
    the rest, e.g. a string that holds the six characters of that escape."""
    try:
        if _NUL_ESCAPE not in orjson.dumps(value):
            return False
    except TypeError:  # not JSON-shaped: walk it
        pass
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def refuse_nul(value: str) -> str:
    """A pydantic after-validator (and plain check): the string unchanged, or ValueError."""
    if NUL in value:
        raise ValueError(NUL_MESSAGE)
    return value


Text = Annotated[str, AfterValidator(refuse_nul)]
"""A request string that may be stored: any text but U+0000."""


class NulFree(BaseModel):
    """A schema base that refuses a NUL in any string of its input, however nested (keys too).

    What `consumers.registry.Payload` should inherit from, so that every WebSocket request schema
    refuses NUL in one place (fields typed `Text` then need nothing more)."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if has_nul(data):
            raise ValueError(NUL_MESSAGE)
        return data
