"""`python -m bench [--quick] [--only fold|pipeline]`: run the benchmarks, print the table.

Bench 1 needs only Postgres; Kafka is started afterwards for bench 2, so that an idle broker
does not share the two cores with bench 1. Each bench works in a database of its own.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence

from rich.console import Console

from bench.backends import fresh_database, kafka_bootstrap, migrated_store, postgres_url, workdir
from bench.pipeline_e2e import bench_pipeline
from bench.plan import BenchPlan, FoldPlan, PipelinePlan, parse_args
from bench.report import BenchFailure, Section, build_table, footnotes
from bench.status_fold import bench_status_fold
from service.localstack import LocalStackError
from service.logging import configure_logging


async def _fold(server_url: str, plan: FoldPlan, console: Console) -> Section:
    async with fresh_database(server_url) as url, migrated_store(url) as store:
        return await bench_status_fold(store, plan, lambda line: console.print(f"[dim]{line}"))


async def _pipeline(
    server_url: str, bootstrap: str, plan: PipelinePlan, console: Console
) -> Section:
    async with fresh_database(server_url) as url, migrated_store(url) as store:
        return await bench_pipeline(
            bootstrap, url, store, plan, lambda line: console.print(f"[dim]{line}")
        )


def run(plan: BenchPlan, console: Console) -> list[Section]:
    """Start (or borrow) the servers and run the benches the plan asks for."""
    sections: list[Section] = []
    with workdir() as folder, postgres_url(folder) as server_url:
        if plan.only in (None, "fold"):
            sections.append(asyncio.run(_fold(server_url, plan.fold, console)))
        if plan.only in (None, "pipeline"):
            with kafka_bootstrap(folder) as bootstrap:
                sections.append(
                    asyncio.run(_pipeline(server_url, bootstrap, plan.pipeline, console))
                )
    return sections


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    configure_logging("WARNING")  # the service's info lines would drown the report
    console = Console()
    if not console.is_terminal:  # piped or captured: rich would assume 80 columns
        console = Console(width=132)
    started = time.monotonic()
    try:
        sections = run(plan, console)
    except BenchFailure as exc:
        console.print(f"[bold red]benchmark failed, no figures reported:[/bold red] {exc}")
        return 1
    except LocalStackError as exc:
        console.print(f"[bold red]could not start a server:[/bold red] {exc}\n{exc.details}")
        return 2
    console.print(build_table(sections))
    for line in footnotes(sections):
        console.print(line, highlight=False, soft_wrap=True)
    warmup = "after an untimed warm-up" if plan.fold.warmup else "without warm-up"
    console.print(
        f"Medians of {plan.fold.runs} (bench 1) and {plan.pipeline.runs} (bench 2) runs,"
        f" {warmup}; ratios are ratios of medians."
        f" Wall time {time.monotonic() - started:.0f} s.",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
