"""Extraction: each supported content type gives normalised text; bad input gives a reason code."""

from __future__ import annotations

import json

import pytest
from fpdf import FPDF
from hypothesis import given, settings
from hypothesis import strategies as st

from service.demo_corpus import render_pdf
from service.domain.documents import SUPPORTED_CONTENT_TYPES
from service.domain.extraction import ExtractionError, extract_text, normalize_text


def _fpdf2_pdf(lines: list[str]) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    for line in lines:
        pdf.cell(text=line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


_HTML_PAGE = b"""<!DOCTYPE html>
<html><head><title>Field  notes</title>
<style>body { color: red; }</style>
<script>var secret = "do not index";</script>
</head>
<body>
<!-- a comment nobody reads -->
<noscript>Please enable JavaScript</noscript>
<template><p>template content</p></template>
<h1>Partitions</h1>
<p>Keys keep   <b>order</b>
within a <a href="#">partition</a>.</p>
<div>one<br>two</div>
<ul><li>first</li><li>second</li></ul>
</body></html>"""

_JSON_DOCUMENT = json.dumps(
    {
        "title": "Brokers",
        "count": 3,
        "ok": True,
        "nothing": None,
        "sections": [
            {"heading": "Leaders", "body": ["elect", 4.5, {"deep": "replicas"}]},
            "loose string",
        ],
        "tail": "end",
    }
).encode()


@pytest.mark.parametrize(
    ("content", "content_type", "expected"),
    [
        pytest.param(b"hello world\n", "text/plain", "hello world", id="plain"),
        pytest.param(
            "caf\u00e9 cr\u00e8me \u2014 \u65e5\u672c".encode(),
            "text/plain; charset=utf-8",
            "caf\u00e9 cr\u00e8me \u2014 \u65e5\u672c",
            id="plain-utf8-with-parameters",
        ),
        pytest.param(b"\xef\xbb\xbfwith bom", "text/plain", "with bom", id="plain-bom-dropped"),
        pytest.param(
            b"a  \r\nb\t\r\n\r\n\r\n\r\nc\x00d\n\n\n",
            "TEXT/PLAIN",
            "a\nb\n\ncd",
            id="plain-normalised",
        ),
        pytest.param(
            b"# Title\n\nSome *emphasis* and `code`.\n\n\n- item  \n",
            "text/markdown",
            "# Title\n\nSome *emphasis* and `code`.\n\n- item",
            id="markdown-kept-as-text",
        ),
        pytest.param(
            _HTML_PAGE,
            "text/html",
            "Field notes\nPartitions\nKeys keep order within a partition.\none\ntwo\nfirst\nsecond",
            id="html-blocks-scripts-dropped",
        ),
        pytest.param(b"<p>a &amp; b &lt;c&gt;</p>", "text/html", "a & b <c>", id="html-entities"),
        pytest.param(b"just text, no tags", "text/html", "just text, no tags", id="html-bare"),
        pytest.param(
            _JSON_DOCUMENT,
            "application/json",
            "Brokers\nLeaders\nelect\nreplicas\nloose string\nend",
            id="json-strings-in-order",
        ),
        pytest.param(b'"top"', "application/json", "top", id="json-top-level-string"),
        pytest.param(b"[1, 2, {}]", "application/json", "", id="json-no-strings"),
        pytest.param(
            b'{"a": "x\\u0000y", "b": "line  \\n\\n\\n\\nnext"}',
            "application/json",
            "xy\nline\n\nnext",
            id="json-normalised",
        ),
    ],
)
def test_extract_text_returns_normalised_text(
    content: bytes, content_type: str, expected: str
) -> None:
    assert extract_text(content, content_type) == expected


def test_pdf_from_the_demo_corpus_writer_round_trips() -> None:
    paragraphs = ["Consumer groups share partitions.", "Offsets (and lag) matter \\ always."]
    text = extract_text(render_pdf("Streaming notes", paragraphs), "application/pdf")
    assert text.splitlines() == ["Streaming notes", *paragraphs]


def test_pdf_from_the_demo_corpus_writer_keeps_every_page_and_latin1_text() -> None:
    paragraphs = [f"Paragraph {n} about cr\u00e8me fra\u00eeche and pur\u00e9e." for n in range(80)]
    pdf = render_pdf("Many pages", paragraphs)
    assert pdf.count(b"/Type /Page ") == 4
    text = extract_text(pdf, "application/pdf")
    assert text.splitlines() == ["Many pages", *paragraphs]


def test_pdf_from_fpdf2_round_trips() -> None:
    lines = ["Quarterly report", "Revenue grew in every region.", "Costs stayed flat."]
    assert extract_text(_fpdf2_pdf(lines), "application/pdf").splitlines() == lines


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        pytest.param(b"hello", "image/png", "unsupported_content_type", id="image"),
        pytest.param(b"hello", "", "unsupported_content_type", id="empty-type"),
        pytest.param(b"hello", "text/csv", "unsupported_content_type", id="csv"),
        pytest.param(b"caf\xe9", "text/plain", "extract_failed", id="plain-latin1-bytes"),
        pytest.param(b"\xff\xfe", "text/markdown", "extract_failed", id="markdown-invalid-utf8"),
        pytest.param(b"<p>caf\xe9</p>", "text/html", "extract_failed", id="html-invalid-utf8"),
        pytest.param(b'{"a": "caf\xe9"}', "application/json", "extract_failed", id="json-utf8"),
        pytest.param(b'{"a": ', "application/json", "extract_failed", id="json-truncated"),
        pytest.param(b"", "application/json", "extract_failed", id="json-empty"),
        pytest.param(b"{'a': 1}", "application/json", "extract_failed", id="json-single-quotes"),
        pytest.param(b"[" * 100_000, "application/json", "extract_failed", id="json-too-deep"),
        pytest.param(b"", "application/pdf", "extract_failed", id="pdf-empty"),
        pytest.param(b"hello world", "application/pdf", "extract_failed", id="pdf-not-a-pdf"),
        pytest.param(b"%PDF-1.4\n1 0 obj", "application/pdf", "extract_failed", id="pdf-cut"),
        pytest.param(
            render_pdf("Cut short", ["Half a document."])[:150],
            "application/pdf",
            "extract_failed",
            id="pdf-truncated",
        ),
        pytest.param(
            b"%PDF-1.4\n" + bytes(range(256)) * 20 + b"\n%%EOF\n",
            "application/pdf",
            "extract_failed",
            id="pdf-garbage-body",
        ),
    ],
)
def test_extract_text_fails_with_a_stable_reason(
    content: bytes, content_type: str, reason: str
) -> None:
    with pytest.raises(ExtractionError) as caught:
        extract_text(content, content_type)
    assert caught.value.reason == reason
    assert caught.value.detail
    assert len(caught.value.detail) <= 240


def test_extraction_error_carries_reason_and_detail() -> None:
    error = ExtractionError("extract_failed", "invalid JSON")
    assert (error.reason, error.detail) == ("extract_failed", "invalid JSON")
    assert "extract_failed" in str(error)


def test_deeply_nested_json_within_the_parser_limit_is_extracted() -> None:
    depth = 500
    document = "[" * depth + '"deep"' + "]" * depth
    assert extract_text(document.encode(), "application/json") == "deep"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("\n\n\n", ""),
        ("a\x00b", "ab"),
        ("a\rb\r\nc", "a\nb\nc"),
        ("a \t\nb  ", "a\nb"),
        ("a\n \n\t\n\nb", "a\n\nb"),
        ("  indented\n    code", "  indented\n    code"),
    ],
)
def test_normalize_text(text: str, expected: str) -> None:
    assert normalize_text(text) == expected


@given(st.text())
def test_normalize_text_is_idempotent_and_bounded(text: str) -> None:
    normalised = normalize_text(text)
    assert normalize_text(normalised) == normalised
    assert "\x00" not in normalised
    assert "\r" not in normalised
    assert "\n\n\n" not in normalised
    assert all(line == line.rstrip() for line in normalised.split("\n"))


@given(st.text())
def test_plain_text_round_trips_through_utf8(text: str) -> None:
    assert extract_text(text.encode(), "text/plain") == normalize_text(text.removeprefix("\ufeff"))


@settings(max_examples=150, deadline=None)
@given(
    content=st.one_of(
        st.binary(max_size=512),
        st.binary(max_size=512).map(lambda tail: b"%PDF-1.4\n" + tail),
        st.text(max_size=200).map(str.encode),
    ),
    content_type=st.sampled_from(sorted(SUPPORTED_CONTENT_TYPES)),
)
def test_arbitrary_bytes_give_text_or_an_extraction_error(
    content: bytes, content_type: str
) -> None:
    try:
        text = extract_text(content, content_type)
    except ExtractionError as error:
        assert error.reason == "extract_failed"
    else:
        assert isinstance(text, str)
