"""The benchmark report's arithmetic and layout, on given numbers (no servers, no timing)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from bench import naive_sql
from bench.plan import FULL, QUICK, parse_args
from bench.report import (
    Comparison,
    Measurement,
    Section,
    build_table,
    footnotes,
    format_rate,
    format_ratio,
    format_seconds,
    median,
    rate,
    ratio,
)

MIGRATION = Path(__file__).resolve().parents[2] / "service/adapters/migrations/001_initial.sql"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3.0], 3.0),
        ([5.0, 1.0, 3.0], 3.0),
        ([4.0, 1.0, 3.0, 2.0], 2.5),
        ([1.0, 100.0, 2.0, 3.0, 2.5], 2.5),  # one noisy run does not move the median
    ],
)
def test_median(values: list[float], expected: float) -> None:
    assert median(values) == expected


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        median([])


def test_rate_and_ratio_refuse_meaningless_inputs() -> None:
    assert rate(20_000, 0.5) == 40_000
    assert ratio(30.0, 10.0) == 3.0
    with pytest.raises(ValueError):
        rate(10, 0.0)
    with pytest.raises(ValueError):
        ratio(1.0, 0.0)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1234.0, "1,234x"),
        (18.94, "18.9x"),
        (2.5, "2.50x"),
        (0.1534, "0.153x"),
        (0.001234, "1.23e-03x"),
        (float("inf"), "n/a"),
    ],
)
def test_format_ratio(value: float, text: str) -> None:
    assert format_ratio(value) == text


@pytest.mark.parametrize(
    ("value", "text"), [(264_992.4, "264,992"), (89.66, "89.7"), (7.123, "7.12")]
)
def test_format_rate(value: float, text: str) -> None:
    assert format_rate(value) == text


@pytest.mark.parametrize(("seconds", "text"), [(0.0452, "45.2 ms"), (2.234, "2.23 s")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_measurement_rejects_a_clock_that_did_not_move() -> None:
    m = Measurement("x", "docs", 10)
    with pytest.raises(ValueError):
        m.add(0.0)
    assert m.seconds == []


@given(
    st.lists(st.floats(min_value=1e-3, max_value=1e3), min_size=1, max_size=9).filter(
        lambda xs: len(xs) % 2 == 1
    )
)
def test_median_rate_of_odd_runs_is_count_over_median_time(seconds: list[float]) -> None:
    m = Measurement("x", "outcomes", 1000)
    for s in seconds:
        m.add(s)
    assert m.median_rate == pytest.approx(1000 / m.median_seconds)


def test_comparison_is_the_ratio_of_median_rates() -> None:
    ours = Measurement("ours", "outcomes", 20_000, [0.5, 0.4, 10.0])  # median 0.5 s: 40,000/s
    naive = Measurement("naive", "outcomes", 2_000, [1.0, 2.0, 0.8])  # median 1.0 s: 2,000/s
    assert Comparison("ours / naive", ours, naive).value == pytest.approx(20.0)


def _render(sections: list[Section]) -> str:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(build_table(sections))
    return out.getvalue()


def test_table_shows_medians_spreads_ratios_and_numbered_notes() -> None:
    ours = Measurement("ours", "outcomes", 20_000, [0.5, 0.4, 0.8], note="500 events per txn")
    naive = Measurement("naive", "outcomes", 2_000, [1.0, 2.0, 0.8], note="sized down")
    section = Section(
        "1 status fold",
        [ours, naive],
        [Comparison("ours / naive", ours, naive, "rates, N differs")],
        ["checked exact"],
    )
    text = _render([section])
    assert "1 status fold" in text
    assert "20,000 outcomes" in text
    assert "40,000 outcomes/s" in text  # 20,000 / median 0.5 s
    assert "25,000…50,000" in text  # min and max of the per-run rates
    assert "500.0 ms" in text
    assert "20.0x" in text
    assert "ours [1]" in text
    assert footnotes([section]) == [
        "[1] 500 events per txn",
        "[2] sized down",
        "[3] rates, N differs",
        "1 status fold: checked exact",
    ]


def _placeholders(sql: str) -> list[int]:
    return sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})


@pytest.mark.parametrize(
    ("sql", "parameters"),
    [(naive_sql.NAIVE_UPSERT_OUTCOME, 4), (naive_sql.NAIVE_RECOUNT_PHASE, 2)],
)
def test_naive_statements_are_constants_with_numbered_parameters(sql: str, parameters: int) -> None:
    assert isinstance(sql, str)
    assert _placeholders(sql) == list(range(1, parameters + 1))


def test_sql_constants_are_plain_strings_naming_the_real_tables() -> None:
    constants = {
        name: value
        for name, value in vars(naive_sql).items()
        if name.isupper() and not name.startswith("_")
    }
    assert all(isinstance(v, str | tuple) for v in constants.values())
    assert "ingestion_document_status" in naive_sql.NAIVE_UPSERT_OUTCOME
    assert "ingestion_phase_status" in naive_sql.NAIVE_RECOUNT_PHASE
    assert naive_sql.COPY_TABLE in naive_sql.CREATE_COPY_TABLE
    assert "TEMPORARY" in naive_sql.CREATE_COPY_TABLE.upper()


def test_copy_columns_are_every_column_of_the_document_status_table() -> None:
    ddl = MIGRATION.read_text()
    body = ddl.split("CREATE TABLE ingestion_document_status (", 1)[1].split(");", 1)[0]
    columns = [
        line.split()[0]
        for line in body.splitlines()
        if line.strip() and not line.strip().upper().startswith("PRIMARY KEY")
    ]
    assert tuple(columns) == naive_sql.COPY_COLUMNS


def test_quick_plan_is_smaller_than_the_full_one() -> None:
    assert parse_args(["--quick"]).fold == QUICK.fold
    assert parse_args([]).pipeline == FULL.pipeline
    assert parse_args(["--only", "fold"]).only == "fold"
    assert QUICK.fold.runs <= FULL.fold.runs
    assert QUICK.fold.jobs * QUICK.fold.docs_per_job < FULL.fold.jobs * FULL.fold.docs_per_job
    assert QUICK.pipeline.documents < FULL.pipeline.documents
    # The naive baseline keeps the same documents per job, so its recounts are as large.
    assert FULL.fold.naive_jobs < FULL.fold.jobs
