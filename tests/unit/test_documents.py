"""Documents: content types by file name, media type normalisation, identifier pattern."""

from __future__ import annotations

import re

import pytest

from service.domain.documents import (
    ID_PATTERN,
    SUPPORTED_CONTENT_TYPES,
    content_type_for,
    is_valid_id,
    normalize_content_type,
)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("notes.txt", "text/plain"),
        ("notes.text", "text/plain"),
        ("README.md", "text/markdown"),
        ("guide.markdown", "text/markdown"),
        ("index.html", "text/html"),
        ("index.htm", "text/html"),
        ("data.json", "application/json"),
        ("paper.pdf", "application/pdf"),
        ("REPORT.PDF", "application/pdf"),
        ("Page.HtMl", "text/html"),
        ("corpus/streaming-017.md", "text/markdown"),
        ("/abs/dir.with.dots/file.json", "application/json"),
        ("archive.tar.gz", None),
        ("image.png", None),
        ("Makefile", None),
        ("notes.txt.bak", None),
        ("", None),
    ],
)
def test_content_type_for_maps_extensions(filename: str, expected: str | None) -> None:
    assert content_type_for(filename) == expected


def test_every_mapped_content_type_is_supported() -> None:
    names = ["a.txt", "a.text", "a.md", "a.markdown", "a.html", "a.htm", "a.json", "a.pdf"]
    assert {content_type_for(name) for name in names} == SUPPORTED_CONTENT_TYPES


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/plain", "text/plain"),
        ("Text/HTML", "text/html"),
        ("text/html; charset=utf-8", "text/html"),
        ("  application/JSON ;charset=UTF-8; foo=bar ", "application/json"),
        ("application/pdf;", "application/pdf"),
        ("", ""),
    ],
)
def test_normalize_content_type_lowercases_and_drops_parameters(value: str, expected: str) -> None:
    assert normalize_content_type(value) == expected


@pytest.mark.parametrize(
    ("identifier", "valid"),
    [
        ("doc-1", True),
        ("kb.main:v2/section@3_x", True),
        ("a", True),
        ("x" * 200, True),
        ("x" * 201, False),
        ("", False),
        ("has space", False),
        ("emoji-😀", False),
        ("trailing-newline\n", False),
        ("semi;colon", False),
    ],
)
def test_id_pattern_accepts_only_the_documented_alphabet(identifier: str, valid: bool) -> None:
    assert (re.fullmatch(ID_PATTERN, identifier) is not None) is valid
    assert is_valid_id(identifier) is valid
