"""Request body parsing for the HTTP API."""

from __future__ import annotations

from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from hub import jsonbody


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser through `hub.jsonbody`: too deep, NaN, infinities, lone surrogates are a 400.

    The standard library's parser raised RecursionError (an HTML 500) for a body nested a thousand levels."""

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return jsonbody.loads(stream.read())
        except jsonbody.InvalidJSON as exc:
            raise ParseError(f"The body is {exc}{f' ({exc.detail})' if exc.detail else ''}.") from exc
