"""Pure helpers of the benchmark report: medians, rates, ratios and the rich table.

Nothing here touches a server, so the unit tests can check the arithmetic and the layout.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.table import Table


class BenchFailure(Exception):
    """A benchmark computed a wrong answer or could not run: its figures must not be reported."""


def median(values: Sequence[float]) -> float:
    """The median of the values (mean of the middle two for an even count).

    Raises:
        ValueError: no values.
    """
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def rate(count: int, seconds: float) -> float:
    """Items per second.

    Raises:
        ValueError: a non-positive duration (a clock that did not move is not a measurement).
    """
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {seconds!r}")
    return count / seconds


def ratio(value: float, baseline: float) -> float:
    """value / baseline.

    Raises:
        ValueError: a non-positive baseline.
    """
    if baseline <= 0:
        raise ValueError(f"baseline must be positive, got {baseline!r}")
    return value / baseline


def format_rate(per_second: float) -> str:
    """A rate with thousands separators and a precision that suits its size."""
    if per_second >= 100:
        return f"{per_second:,.0f}"
    if per_second >= 10:
        return f"{per_second:,.1f}"
    return f"{per_second:,.2f}"


def format_ratio(value: float) -> str:
    """A ratio as a multiplier: 3 significant digits, at least 2 decimals below 1."""
    if not math.isfinite(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    if value >= 1:
        return f"{value:.2f}x"
    return f"{value:.3g}x" if value >= 0.01 else f"{value:.2e}x"


def format_seconds(seconds: float) -> str:
    """A duration in ms below one second, in s above."""
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


@dataclass
class Measurement:
    """Repeated timings of one variant that processes `count` items of `unit` per run."""

    name: str
    unit: str
    count: int
    seconds: list[float] = field(default_factory=list)
    note: str = ""

    def add(self, seconds: float) -> None:
        """Record one run's duration."""
        rate(self.count, seconds)  # rejects a non-positive duration now, not at report time
        self.seconds.append(seconds)

    @property
    def rates(self) -> list[float]:
        return [rate(self.count, s) for s in self.seconds]

    @property
    def median_seconds(self) -> float:
        return median(self.seconds)

    @property
    def median_rate(self) -> float:
        """The median of the per-run rates (the same as count / median time)."""
        return median(self.rates)


@dataclass(frozen=True)
class Comparison:
    """A ratio of median rates: `subject` over `baseline`."""

    label: str
    subject: Measurement
    baseline: Measurement
    note: str = ""

    @property
    def value(self) -> float:
        return ratio(self.subject.median_rate, self.baseline.median_rate)


@dataclass
class Section:
    """One benchmark: its measurements and the ratios between them."""

    title: str
    measurements: list[Measurement] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def build_table(sections: Sequence[Section], title: str = "kb-ingest benchmarks") -> Table:
    """The report: one row per measurement (median time and rate, spread of the per-run rates),
    then one row per ratio of medians, section by section. Notes go under it (`footnotes`)."""
    table = Table(title=title, title_justify="left")
    table.add_column("bench / variant", no_wrap=True)
    table.add_column("N per run", justify="right", no_wrap=True)
    table.add_column("runs", justify="right")
    table.add_column("median time", justify="right", no_wrap=True)
    table.add_column("median rate", justify="right", no_wrap=True)
    table.add_column("rate min…max", justify="right", no_wrap=True)
    marks = _marks(sections)
    for index, section in enumerate(sections):
        if index:
            table.add_section()
        table.add_row(f"[bold]{section.title}[/bold]")
        for m in section.measurements:
            rates = m.rates
            table.add_row(
                f"  {m.name}{marks.get(id(m), '')}",
                f"{m.count:,} {m.unit}",
                str(len(m.seconds)),
                format_seconds(m.median_seconds),
                f"{format_rate(m.median_rate)} {m.unit}/s",
                f"{format_rate(min(rates))}…{format_rate(max(rates))}",
            )
        for c in section.comparisons:
            table.add_row(
                f"  [bold]{c.label}[/bold]{marks.get(id(c), '')}",
                "",
                "",
                "",
                f"[bold]{format_ratio(c.value)}[/bold]",
                "",
            )
    return table


def _marks(sections: Sequence[Section]) -> dict[int, str]:
    marks: dict[int, str] = {}
    for item in _noted(sections):
        marks[id(item)] = f" [{len(marks) + 1}]"
    return marks


def _noted(sections: Sequence[Section]) -> list[Measurement | Comparison]:
    """The rows that carry a note, in table order."""
    noted: list[Measurement | Comparison] = []
    for section in sections:
        noted.extend(m for m in section.measurements if m.note)
        noted.extend(c for c in section.comparisons if c.note)
    return noted


def footnotes(sections: Sequence[Section]) -> list[str]:
    """The notes of the table: numbered ones for the marked rows, then each section's."""
    lines = [f"[{n}] {item.note}" for n, item in enumerate(_noted(sections), start=1)]
    for section in sections:
        lines.extend(f"{section.title}: {note}" for note in section.notes)
    return lines
