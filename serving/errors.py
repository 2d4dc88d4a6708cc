"""422 answers that are safe to send and to log: at most a short excerpt of the input, never
anything equal to an API key, never a number JSON cannot write (NaN, infinities)."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

EXCERPT = 100
"""Most characters of the input echoed in an error (the rest is replaced by `...`)."""
MESSAGE = 300
REDACTED = "[redacted]"
NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


class _Full(Exception):
    """The excerpt has all the characters it may show."""


class Redactor:
    """Replaces the configured API keys, as written or JSON-escaped, in text."""

    def __init__(self, keys: Sequence[str]) -> None:
        forms = {form for key in keys if key for form in (key, json.dumps(key)[1:-1])}
        self.forms = sorted(forms, key=len, reverse=True)
        self.budget = EXCERPT + max((len(form) for form in self.forms), default=0)
        """Characters read before cutting: a key starting inside the excerpt is whole."""

    def text(self, text: str, most: int = EXCERPT) -> str:
        """`text` without any key, cut to `most` characters."""
        text = text[: most + self.budget]
        for form in self.forms:
            text = text.replace(form, REDACTED)
        return text if len(text) <= most else text[:most] + "..."

    def value(self, value: Any) -> Any:
        """A JSON-safe excerpt of an input value: small numbers, booleans and null as they
        are, NaN and infinities by name, everything else as text of at most `EXCERPT`
        characters."""
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value if abs(value) < 2**64 else self.text(str(value))
        if isinstance(value, float):
            return value if math.isfinite(value) else NON_FINITE.get(value, "NaN")
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.text(value[: self.budget].decode("utf-8", errors="replace"))
        if isinstance(value, dict | list | tuple):
            return self.text(_json_excerpt(value, self.budget))
        return self.text(str(value)[: self.budget])


def _json_excerpt(value: Any, budget: int) -> str:
    """The start of `value` written as JSON, stopping after about `budget` characters (so a
    90 MB body is never written out to show 100 characters of it)."""
    parts: list[str] = []
    size = 0

    def put(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)
        if size > budget:
            raise _Full

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            put("{")
            for position, (key, inner) in enumerate(item.items()):
                put(", " if position else "")
                put(json.dumps(str(key)[:budget], ensure_ascii=False) + ": ")
                walk(inner)
            put("}")
        elif isinstance(item, list | tuple):
            put("[")
            for position, inner in enumerate(item):
                put(", " if position else "")
                walk(inner)
            put("]")
        elif isinstance(item, float) and not math.isfinite(item):
            put(NON_FINITE.get(item, "NaN"))
        elif item is None or isinstance(item, bool | int | float):
            put(json.dumps(item))
        else:
            put(json.dumps(str(item)[:budget], ensure_ascii=False))

    with contextlib.suppress(_Full):
        walk(value)
    return "".join(parts)


def safe_errors(errors: Sequence[Any], redactor: Redactor) -> list[dict[str, Any]]:
    """Validation errors as FastAPI lists them (`type`, `loc`, `msg`, `input`, `ctx`), with
    every part made safe by `redactor`."""
    safe = []
    for error in errors:
        item: dict[str, Any] = {
            "type": redactor.text(str(error.get("type", "")), MESSAGE),
            "loc": [
                part if isinstance(part, int) else redactor.text(str(part))
                for part in error.get("loc", ())
            ],
            "msg": redactor.text(str(error.get("msg", "")), MESSAGE),
        }
        if "input" in error:
            item["input"] = redactor.value(error["input"])
        if isinstance(error.get("ctx"), dict):
            item["ctx"] = {str(k): redactor.value(v) for k, v in error["ctx"].items()}
        safe.append(item)
    return safe


async def validation_error_handler(request: Request, error: Exception) -> JSONResponse:
    """422 naming each field, with short, key-free excerpts of what was sent."""
    assert isinstance(error, RequestValidationError)
    detail = safe_errors(error.errors(), request.app.state.redactor)
    return JSONResponse(status_code=422, content={"detail": detail})
