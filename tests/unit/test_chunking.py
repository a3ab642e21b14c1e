"""Chunking: bounded, overlapping, deterministic windows that cover the whole text."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.chunking import ChunkingParams, chunk_spans, chunk_text


@pytest.mark.parametrize(
    ("size", "overlap"),
    [(0, 0), (-1, 0), (10, -1), (10, 10), (10, 11), (1, 1)],
)
def test_params_reject_impossible_windows(size: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        ChunkingParams(size=size, overlap=overlap)


def test_params_defaults() -> None:
    assert ChunkingParams() == ChunkingParams(size=1000, overlap=100)


_FOX = "The quick brown fox jumps over the lazy dog again and again"


@pytest.mark.parametrize(
    ("text", "size", "overlap", "expected"),
    [
        pytest.param("", 10, 0, [], id="empty"),
        pytest.param(" \n\t  \n", 3, 1, [], id="whitespace-only"),
        pytest.param("  short text \n", 100, 10, ["short text"], id="fits-one-chunk"),
        pytest.param(
            _FOX,
            20,
            0,
            ["The quick brown fox", "jumps over the lazy", "dog again and again"],
            id="cut-at-word-boundaries",
        ),
        pytest.param(
            _FOX,
            20,
            5,
            ["The quick brown fox", "fox jumps over the", "the lazy dog again", "again and again"],
            id="overlap-starts-at-a-word",
        ),
        pytest.param(
            "abcdefghijabcdefghij",
            7,
            2,
            ["abcdefg", "fghijab", "abcdefg", "fghij"],
            id="no-whitespace-hard-cuts",
        ),
        pytest.param("abc def", 3, 0, ["abc", "def"], id="whitespace-right-after-window"),
        pytest.param("abc   def", 4, 0, ["abc", "def"], id="whitespace-between-windows-skipped"),
        pytest.param("ab", 1, 0, ["a", "b"], id="size-one"),
        pytest.param("EE ", 2, 1, ["EE"], id="trailing-whitespace-adds-no-chunk"),
        pytest.param(
            "abcd" + " " * 10 + "efgh",
            6,
            3,
            ["abcd", "efgh"],
            id="long-whitespace-run-adds-no-repeat",
        ),
        pytest.param(
            "aaaa bbbbbbbbbbbbbbbb",
            10,
            0,
            ["aaaa bbbbb", "bbbbbbbbbb", "b"],
            id="whitespace-outside-final-fifth-is-ignored",
        ),
    ],
)
def test_chunk_text_table(text: str, size: int, overlap: int, expected: list[str]) -> None:
    assert chunk_text(text, ChunkingParams(size=size, overlap=overlap)) == expected


_params = st.integers(min_value=1, max_value=60).flatmap(
    lambda size: st.builds(
        ChunkingParams, size=st.just(size), overlap=st.integers(min_value=0, max_value=size - 1)
    )
)
_texts = st.text(alphabet=st.sampled_from("ab cd\n\tEé—"), max_size=400) | st.text(max_size=200)


@given(_texts, _params)
def test_chunking_is_deterministic(text: str, params: ChunkingParams) -> None:
    assert chunk_text(text, params) == chunk_text(text, params)
    assert chunk_spans(text, params) == chunk_spans(text, params)


@given(_texts, _params)
def test_chunks_are_bounded_stripped_and_non_empty(text: str, params: ChunkingParams) -> None:
    for chunk in chunk_text(text, params):
        assert 0 < len(chunk) <= params.size
        assert chunk == chunk.strip()


@given(_texts, _params)
def test_spans_are_ordered_trimmed_and_overlap_by_at_most_the_overlap(
    text: str, params: ChunkingParams
) -> None:
    spans = chunk_spans(text, params)
    for start, end in spans:
        assert 0 <= start < end <= len(text)
        assert end - start <= params.size
        assert not text[start].isspace()
        assert not text[end - 1].isspace()
    for (start, end), (next_start, next_end) in itertools.pairwise(spans):
        assert start < next_start
        assert end < next_end
        assert end - next_start <= params.overlap
        # Between two chunks that do not touch there is only whitespace.
        assert text[end:next_start].strip() == ""


@given(_texts, _params)
def test_chunk_text_is_the_text_of_the_spans(text: str, params: ChunkingParams) -> None:
    assert chunk_text(text, params) == [text[start:end] for start, end in chunk_spans(text, params)]


@given(_texts, _params)
def test_every_non_whitespace_character_is_in_some_chunk(text: str, params: ChunkingParams) -> None:
    spans = chunk_spans(text, params)
    covered = {position for start, end in spans for position in range(start, end)}
    assert all(position in covered for position, char in enumerate(text) if not char.isspace())
    # Equivalently: dropping each chunk's overlap with its predecessor, and the whitespace
    # between chunks, leaves the text without its whitespace.
    pieces = [text[start:end] for start, end in spans[:1]] + [
        text[max(previous_end, start) : end]
        for (_, previous_end), (start, end) in itertools.pairwise(spans)
    ]
    assert "".join("".join(pieces).split()) == "".join(text.split())


@given(
    st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=8), min_size=1, max_size=80),
    st.integers(min_value=50, max_value=120),
)
def test_words_shorter_than_a_fifth_of_the_size_are_never_cut(words: list[str], size: int) -> None:
    text = " ".join(words)
    chunks = chunk_text(text, ChunkingParams(size=size, overlap=0))
    assert [word for chunk in chunks for word in chunk.split()] == words
