"""Documents: identifiers and the content types the service can extract."""

from __future__ import annotations

import re
from pathlib import PurePath

# Job, KB and document ids. With Python's `re`, test it with fullmatch (or is_valid_id):
# re.match also accepts a trailing newline before `$`.
ID_PATTERN = r"^[A-Za-z0-9._:/@-]{1,200}$"
_ID_RE = re.compile(ID_PATTERN)

SUPPORTED_CONTENT_TYPES: frozenset[str] = frozenset(
    {
        "text/plain",
        "text/markdown",
        "text/html",
        "application/json",
        "application/pdf",
    }
)

_CONTENT_TYPE_BY_EXTENSION: dict[str, str] = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".json": "application/json",
    ".pdf": "application/pdf",
}


def is_valid_id(value: str) -> bool:
    """Return whether value is a well-formed job, KB or document id."""
    return _ID_RE.fullmatch(value) is not None


def content_type_for(filename: str) -> str | None:
    """Return the content type implied by a file name's extension, or None if unknown."""
    return _CONTENT_TYPE_BY_EXTENSION.get(PurePath(filename).suffix.lower())


def normalize_content_type(value: str) -> str:
    """Return a media type lower-cased, trimmed and without parameters such as charset."""
    return value.split(";", 1)[0].strip().lower()
