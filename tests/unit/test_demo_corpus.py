"""Demo corpus: deterministic, varied, small, and every file extracts without error."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from service.demo_corpus import DEMO_PHRASE, DEMO_PHRASE_FILE, write_corpus
from service.domain.documents import content_type_for
from service.domain.extraction import extract_text


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def texts(corpus: list[Path]) -> dict[str, str]:
    extracted = {}
    for path in corpus:
        content_type = content_type_for(path.name)
        assert content_type is not None, path.name
        extracted[path.name] = extract_text(path.read_bytes(), content_type)
    return extracted


def test_default_corpus_has_240_distinct_files_in_one_directory(corpus: list[Path]) -> None:
    assert len(corpus) == 240
    assert len({path.name for path in corpus}) == 240
    assert sorted(corpus) == sorted(corpus[0].parent.iterdir())


def test_corpus_mixes_every_supported_type(corpus: list[Path]) -> None:
    by_type = Counter(content_type_for(path.name) for path in corpus)
    assert set(by_type) == {
        "text/plain",
        "text/markdown",
        "text/html",
        "application/json",
        "application/pdf",
    }
    assert min(by_type.values()) >= 40


def test_files_are_small_and_the_corpus_is_a_few_megabytes(corpus: list[Path]) -> None:
    sizes = [path.stat().st_size for path in corpus]
    assert all(1024 <= size <= 8192 for size in sizes)
    assert sum(sizes) < 5 * 1024 * 1024


def test_every_file_extracts_to_distinct_prose(texts: dict[str, str]) -> None:
    assert all(len(text.split()) >= 150 for text in texts.values())
    assert len(set(texts.values())) == len(texts)


def test_html_chrome_is_not_extracted(texts: dict[str, str]) -> None:
    html_texts = [text for name, text in texts.items() if name.endswith(".html")]
    assert html_texts
    for text in html_texts:
        assert "font-family" not in text
        assert "pageviews" not in text
        assert "rendered by" not in text


def test_demo_phrase_is_in_exactly_one_file(corpus: list[Path], texts: dict[str, str]) -> None:
    assert [name for name, text in texts.items() if DEMO_PHRASE in text] == [DEMO_PHRASE_FILE]
    raw_hits = [path.name for path in corpus if DEMO_PHRASE.encode() in path.read_bytes()]
    assert raw_hits == [DEMO_PHRASE_FILE]
    # The rarer words alone also find only that file, so a full-text search is unambiguous.
    for word in ("aurora", "lattice"):
        assert [name for name, text in texts.items() if word in text.lower()] == [DEMO_PHRASE_FILE]


def test_corpus_is_deterministic(tmp_path: Path, corpus: list[Path]) -> None:
    again = write_corpus(tmp_path / "again")
    assert [path.name for path in again] == [path.name for path in corpus]
    assert [_digest(path) for path in again] == [_digest(path) for path in corpus]


def test_seed_changes_the_content_but_not_the_names(tmp_path: Path, corpus: list[Path]) -> None:
    other = write_corpus(tmp_path, count=10, seed=8)
    assert [path.name for path in other] == [path.name for path in corpus[:10]]
    assert all(_digest(a) != _digest(b) for a, b in zip(other, corpus, strict=False))


@pytest.mark.parametrize("count", [1, 2, 5, 18])
def test_small_corpora_still_hold_the_phrase_once(tmp_path: Path, count: int) -> None:
    paths = write_corpus(tmp_path, count=count)
    assert len(paths) == count
    hits = [
        path
        for path in paths
        if DEMO_PHRASE in extract_text(path.read_bytes(), content_type_for(path.name) or "")
    ]
    assert len(hits) == 1


def test_zero_documents_writes_nothing(tmp_path: Path) -> None:
    assert write_corpus(tmp_path / "empty", count=0) == []


def test_negative_count_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_corpus(tmp_path, count=-1)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
