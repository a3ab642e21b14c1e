"""Chunking: plain text → overlapping chunks with deterministic boundaries.

A chunk is a window of at most `size` characters, stripped of surrounding whitespace. A window
ends at the last whitespace in its final fifth, so that words are not cut, or else at `size`
characters. The next window starts `overlap` characters before the previous one ended, moved
forward to the start of a word when that lands mid-word, and always after the previous start.
"""

from __future__ import annotations

from dataclasses import dataclass

# A chunk may end early, at a whitespace, only within the last fifth of its window.
_WORD_BOUNDARY_SEARCH_FRACTION = 5


@dataclass(frozen=True)
class ChunkingParams:
    """How text is cut: at most `size` characters a chunk, `overlap` shared with the previous."""

    size: int = 1000
    overlap: int = 100

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"chunk size must be at least 1, got {self.size}")
        if self.overlap < 0:
            raise ValueError(f"chunk overlap must not be negative, got {self.overlap}")
        if self.overlap >= self.size:
            raise ValueError(
                f"chunk overlap must be smaller than size, got overlap={self.overlap} "
                f"size={self.size}"
            )


def chunk_spans(text: str, params: ChunkingParams) -> list[tuple[int, int]]:
    """Return the (start, end) offsets of the chunks in text, in order; see chunk_text."""
    length = len(text)
    spans: list[tuple[int, int]] = []
    start = _skip_whitespace(text, 0)
    while start < length:
        end = min(start + params.size, length)
        if end < length:
            end = _word_boundary_before(text, start, end, params)
        # text[start] is not whitespace, so the stripped span is never empty.
        stripped_end = _strip_end(text, start, end)
        # A window that adds only whitespace after the previous chunk would repeat part of it.
        if not spans or stripped_end > spans[-1][1]:
            spans.append((start, stripped_end))
        if end == length:
            break
        # max() is a guard: _word_boundary_before already keeps end - overlap > start.
        start = _word_start_after(text, max(end - params.overlap, start + 1), end)
        start = _skip_whitespace(text, start)
    return spans


def chunk_text(text: str, params: ChunkingParams) -> list[str]:
    """Return the text's chunks: stripped, non-empty, the same for the same input."""
    return [text[start:end] for start, end in chunk_spans(text, params)]


def _word_boundary_before(text: str, start: int, end: int, params: ChunkingParams) -> int:
    """Return where to end the window text[start:end] so that no word is cut, if possible.

    `end` < len(text). The window ends at the last whitespace among positions within its final
    fifth, counting position `end` itself (whitespace right after the window means the hard cut
    already falls between words). A cut must leave the window longer than the overlap so that
    the next window starts after this one; without such a whitespace, the cut stays at `end`.
    """
    search_width = max(1, params.size // _WORD_BOUNDARY_SEARCH_FRACTION)
    lowest = max(end - search_width, start + params.overlap + 1)
    for position in range(end, lowest - 1, -1):
        if text[position].isspace():
            return position
    return end


def _word_start_after(text: str, start: int, end: int) -> int:
    """Return `start`, moved forward to the next whitespace before `end` if it falls mid-word.

    This only shortens the overlap, so a chunk never starts with a fragment of a word that the
    previous chunk holds whole; a single word longer than the overlap keeps the hard start.
    """
    if text[start - 1].isspace() or text[start].isspace():
        return start
    for position in range(start + 1, end):
        if text[position].isspace():
            return position
    return start


def _skip_whitespace(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _strip_end(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end
