"""hub.jsonbody and hub.validation: the fast paths decide exactly what the full walks decide."""

from __future__ import annotations

import uuid

import pytest

from hub import jsonbody
from hub.validation import has_nul


def nested(depth: int, leaf: str = '"x"') -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (nested(32), True),
        (nested(33), False),
        ('{"a": ' * 32 + "1" + "}" * 32, True),
        ('{"a": ' * 33 + "1" + "}" * 33, False),
        ('{"body": "' + "[{" * 40 + '"}', True),  # brackets inside a string: the walk runs and says shallow
        ("[" + ",".join(["[]"] * 100) + "]", True),  # many brackets side by side, depth 2
    ],
)
def test_depth_limit(text: str, ok: bool) -> None:
    for data in (text, text.encode()):
        if ok:
            jsonbody.loads(data)
        else:
            with pytest.raises(jsonbody.InvalidJSON, match="deeper than 32"):
                jsonbody.loads(data)


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({"body": "hello", "n": [1, 2.5, None, True]}, False),
        ({"body": "x\x00y"}, True),
        ({"k\x00": 1}, True),
        ([[["deep \x00"]]], True),
        ({"body": "\\u0000"}, False),  # the six characters of the escape, not a NUL: the walk decides
        ({1: "\x00"}, True),  # not JSON-shaped (an int key): walked
        ({"id": uuid.UUID(int=0)}, False),
        ("\x00", True),
        ("", False),
    ],
)
def test_has_nul(value: object, found: bool) -> None:
    assert has_nul(value) is found
