"""Extraction: raw document content of a supported type → normalised plain text."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import Any

from bs4 import BeautifulSoup
from bs4.element import CData, NavigableString, Tag
from pypdf import PdfReader

from service.domain.documents import normalize_content_type

UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
EXTRACT_FAILED = "extract_failed"

# Elements whose text is never shown to a reader.
_DROPPED_HTML_TAGS = frozenset({"script", "style", "noscript", "template"})
# Elements that start a new line of text; inline elements (a, b, span…) do not.
_BLOCK_HTML_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1",
        "h2", "h3", "h4", "h5", "h6", "head", "header", "hr", "html", "li", "main", "nav", "ol",
        "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead",
        "title", "tr", "ul",
    }
)  # fmt: skip
_PDF_HEADER = b"%PDF-"
# Readers such as Acrobat accept a header after up to 1 KiB of leading junk.
_PDF_HEADER_SEARCH_BYTES = 1024
_DETAIL_MAX_CHARS = 200
_WHITESPACE_RUN = re.compile(r"\s+")
_BLANK_LINE_RUN = re.compile(r"\n{3,}")


class ExtractionError(Exception):
    """A document's content cannot be turned into text; permanent for that document."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def extract_text(content: bytes, content_type: str) -> str:
    """Return the normalised plain text of `content` interpreted as `content_type`.

    Raises:
        ExtractionError: reason "unsupported_content_type" for a type not handled here,
            "extract_failed" for content that cannot be decoded or parsed.
    """
    media_type = normalize_content_type(content_type)
    extractor = _EXTRACTORS.get(media_type)
    if extractor is None:
        raise ExtractionError(
            UNSUPPORTED_CONTENT_TYPE, f"content type {_shorten(content_type)!r} is not supported"
        )
    return normalize_text(extractor(content))


def normalize_text(text: str) -> str:
    """Return text without NULs or trailing spaces, with LF newlines, ≤ 1 blank line in a row."""
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return _BLANK_LINE_RUN.sub("\n\n", "\n".join(lines)).strip("\n")


def _decode_utf8(content: bytes) -> str:
    # utf-8-sig is strict UTF-8 that also drops a leading byte-order mark.
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ExtractionError(
            EXTRACT_FAILED, f"invalid UTF-8 at byte {exc.start}: {exc.reason}"
        ) from exc


def _extract_plain(content: bytes) -> str:
    return _decode_utf8(content)


def _extract_html(content: bytes) -> str:
    soup = BeautifulSoup(_decode_utf8(content), "html.parser")
    pieces: list[str] = []
    # An explicit stack instead of recursion: deeply nested markup must not overflow.
    # `None` marks the end of a block element.
    stack: list[Any] = [soup]
    while stack:
        node = stack.pop()
        if node is None:
            pieces.append("\n")
        elif isinstance(node, Tag):
            if node.name in _DROPPED_HTML_TAGS:
                continue
            if node.name in _BLOCK_HTML_TAGS:
                pieces.append("\n")
                stack.append(None)
            stack.extend(reversed(node.contents))
        elif type(node) in (NavigableString, CData):
            # Comments, doctypes and processing instructions are other NavigableString types.
            pieces.append(_WHITESPACE_RUN.sub(" ", node))
    lines = (line.strip() for line in "".join(pieces).split("\n"))
    return "\n".join(line for line in lines if line)


def _extract_json(content: bytes) -> str:
    try:
        document = json.loads(_decode_utf8(content))
    except (ValueError, RecursionError) as exc:
        raise ExtractionError(EXTRACT_FAILED, f"invalid JSON: {_shorten(str(exc))}") from exc
    strings: list[str] = []
    # Depth-first, in document order; an explicit stack so deep nesting cannot overflow.
    stack: list[Any] = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend(reversed(value))
    return "\n".join(strings)


def _extract_pdf(content: bytes) -> str:
    if _PDF_HEADER not in content[: _PDF_HEADER_SEARCH_BYTES + len(_PDF_HEADER)]:
        raise ExtractionError(EXTRACT_FAILED, "not a PDF: no %PDF- header")
    try:
        reader = PdfReader(io.BytesIO(content))
        # pypdf ends a page's text with the newline of its last line move; one is enough.
        return "\n".join(page.extract_text().strip("\n") for page in reader.pages)
    except Exception as exc:  # pypdf raises many exception types on malformed input
        detail = f"unreadable PDF: {type(exc).__name__}: {_shorten(str(exc))}"
        raise ExtractionError(EXTRACT_FAILED, detail) from exc


def _shorten(text: str) -> str:
    if len(text) <= _DETAIL_MAX_CHARS:
        return text
    return text[: _DETAIL_MAX_CHARS - 1] + "…"


_EXTRACTORS: dict[str, Callable[[bytes], str]] = {
    "text/plain": _extract_plain,
    "text/markdown": _extract_plain,
    "text/html": _extract_html,
    "application/json": _extract_json,
    "application/pdf": _extract_pdf,
}
