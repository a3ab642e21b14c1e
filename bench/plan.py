"""What a benchmark run measures, and how much of it: the full plan and `--quick`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FoldPlan:
    """Bench 1: `jobs` x `docs_per_job` documents, 4 outcomes each, for ours and the COPY
    limit; `naive_jobs` x `docs_per_job` for the naive baseline."""

    runs: int
    jobs: int
    docs_per_job: int
    naive_jobs: int
    batch_events: int
    warmup: bool = True


@dataclass(frozen=True)
class PipelinePlan:
    """Bench 2: `documents` documents of about `doc_chars` characters in one job."""

    runs: int
    documents: int
    doc_chars: int
    deadline_s: float
    warmup_documents: int


@dataclass(frozen=True)
class BenchPlan:
    fold: FoldPlan
    pipeline: PipelinePlan
    only: str | None = None  # "fold" or "pipeline" to run one bench


FULL = BenchPlan(
    fold=FoldPlan(runs=5, jobs=10, docs_per_job=500, naive_jobs=1, batch_events=500),
    pipeline=PipelinePlan(
        runs=3, documents=2000, doc_chars=3000, deadline_s=180.0, warmup_documents=200
    ),
)

QUICK = BenchPlan(
    fold=FoldPlan(runs=2, jobs=4, docs_per_job=100, naive_jobs=1, batch_events=500, warmup=False),
    pipeline=PipelinePlan(
        runs=1, documents=200, doc_chars=3000, deadline_s=90.0, warmup_documents=0
    ),
)


def parse_args(argv: Sequence[str] | None = None) -> BenchPlan:
    """The plan the command line asks for."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="kb-ingest benchmarks: figures and ratios"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer runs")
    parser.add_argument(
        "--only", choices=("fold", "pipeline"), help="run only bench 1 (fold) or 2 (pipeline)"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    return BenchPlan(plan.fold, plan.pipeline, args.only)
