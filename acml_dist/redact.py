"""Credentials out of everything acml-dist logs. `redact(text)` masks the user:password of URLs
(`https://alice:s3cret@host` -> `https://***@host`), secret-looking query parameters (`?token=...`, `sig=`,
`X-Amz-Signature=`, ...) and `password: ...` / `api_key=...` lines; `redact_value(key, value)` also masks
values under secret-looking keys (`password`, `token`, `api_key`, ...). Used for MLflow params, logged
configs and printed URIs."""

from __future__ import annotations

import re
from typing import Any

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/@\s'\"]+@")
_SECRET_WORDS = (
    r"token|access[_-]?token|api[_-]?key|apikey|password|passwd|pwd|secret|sig|signature|credential"
)
_SECRET_PARAM = re.compile(rf"(?i)(?P<lead>[?&;](?:x-amz-)?(?:{_SECRET_WORDS})=)[^&\s#'\"]+")
_SECRET_KEY = re.compile(rf"(?i)(^|[._-])({_SECRET_WORDS})($|[._-])")
# `password: x` / `api_key=x` lines (YAML, dotlists) under a secret-looking key
_SECRET_LINE = re.compile(
    rf"(?im)^(?P<lead>[ \t-]*(?:[\w-]*[._-])?(?:{_SECRET_WORDS})(?:[._-][\w-]*)?[ \t]*[:=][ \t]*)"
    r"(?P<value>(?!null\b|None\b|''|\"\")\S[^\n]*)$"
)
MASK = "***"


def redact(text: str) -> str:
    """`text` with URL credentials and secret query parameters masked."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _SECRET_PARAM.sub(lambda m: f"{m.group('lead')}{MASK}", text)
    return _SECRET_LINE.sub(lambda m: f"{m.group('lead')}{MASK}", text)


def redact_value(key: str, value: Any) -> str:
    """A config value as text for logging: masked entirely under a secret-looking key, else `redact`ed."""
    if value is not None and _SECRET_KEY.search(key.rpartition(".")[2]):
        return MASK
    return redact(str(value))
