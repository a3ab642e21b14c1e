"""Faults and phase control with the real processes: kill -9, broker and database restarts,
SIGTERM, pause one job's phase while another job on the same partition keeps flowing.

Every scenario ends with exact counters and exactly the expected chunks in the KB.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import KafkaHandle, PostgresHandle
from tests.e2e.conftest import ServiceEnv, ServiceProcess, ServiceProcesses
from tests.e2e.helpers import (
    ExpectedKb,
    SentDocument,
    all_done,
    assert_same_rows,
    compact_json,
    control,
    counters,
    document,
    kcat_consume,
    kcat_produce,
    wait_until,
)

pytestmark = pytest.mark.slow

ROLES = ("producer", "consumer", "aggregator", "api")


def prose(seed: int, words: int = 600) -> bytes:
    vocabulary = [
        "harbor",
        "signal",
        "ledger",
        "lantern",
        "meadow",
        "copper",
        "orbit",
        "thistle",
        "quarry",
        "willow",
    ]
    return " ".join(
        f"{vocabulary[(seed + k * 7) % 10]}{(seed * 13 + k) % 101}" for k in range(words)
    ).encode()


def documents(job_id: str, kb_id: str, n: int, start: int = 0) -> list[SentDocument]:
    return [
        document(job_id, kb_id, f"doc-{i:05d}", "text/plain", prose(i), as_base64=False)
        for i in range(start, start + n)
    ]


@dataclass
class Stack:
    env: ServiceEnv
    roles: dict[str, ServiceProcess]
    db: asyncpg.Pool
    api: httpx.AsyncClient
    kafka: KafkaHandle
    postgres: PostgresHandle
    counter: itertools.count[int]

    def name(self, prefix: str) -> str:
        return f"{prefix}-{self.env.suffix}-{next(self.counter)}"

    def send(self, docs: list[SentDocument]) -> None:
        kcat_produce(
            self.env.kafka_bootstrap, self.env.topics["documents"], [d.line() for d in docs]
        )

    def seal(self, job_id: str, n: int) -> None:
        message = control("seal", job_id, expected_documents=n)
        kcat_produce(
            self.env.kafka_bootstrap, self.env.topics["control"], [(job_id, compact_json(message))]
        )

    async def phases(self, job_id: str) -> dict[str, tuple[str, int, int, int, int]]:
        try:
            rows = await self.db.fetch(
                "SELECT * FROM ingestion_phase_status WHERE job_id = $1 ORDER BY position", job_id
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return {}  # the database is restarting
        return counters([dict(r) for r in rows])

    async def wait_phase(self, job_id: str, phase: str, at_least: int, within: float = 120) -> None:
        await wait_until(
            lambda: self.phases(job_id),
            lambda p: phase in p and p[phase][2] >= at_least,
            within,
            f"{job_id} {phase} processed >= {at_least}",
        )

    async def wait_done(self, job_id: str, n: int, within: float = 180) -> None:
        await wait_until(
            lambda: self.phases(job_id),
            lambda p: p == all_done(n),
            within,
            f"{job_id} completed with {n} documents",
        )
        status = await self.db.fetchval(
            "SELECT derived_status || '/' || status FROM ingestion_jobs WHERE job_id = $1", job_id
        )
        assert status == "completed/completed"

    async def assert_kb(self, kb_id: str, docs: list[SentDocument]) -> None:
        expected = ExpectedKb.of(docs, self.env.chunking)
        rows = await self.db.fetch(
            "SELECT kb_id, doc_id, chunk_no, text FROM kb_chunks WHERE kb_id = $1", kb_id
        )
        assert_same_rows([tuple(r) for r in rows], expected.chunks, f"kb_chunks of {kb_id}")
        count = await self.db.fetchval("SELECT count(*) FROM kb_documents WHERE kb_id = $1", kb_id)
        assert count == len(docs)


@pytest.fixture(scope="module")
async def stack(
    service_env: Any,
    service_processes: ServiceProcesses,
    kafka_server: KafkaHandle,
    postgres_server: PostgresHandle,
) -> AsyncIterator[Stack]:
    env: ServiceEnv = service_env(
        partitions_documents="1",
        partitions_chunks="1",
        partitions_default="1",
        status_progress_interval_s="0.2",
        batch_max_records="100",
    )
    running = dict(zip(ROLES, service_processes(env, *ROLES), strict=True))
    db = await asyncpg.create_pool(env.database_url, min_size=1, max_size=4)
    try:
        async with httpx.AsyncClient(base_url=running["api"].url, timeout=30) as api:
            yield Stack(env, running, db, api, kafka_server, postgres_server, itertools.count())
    finally:
        await db.close()


@pytest.mark.parametrize("role", ["producer", "consumer", "aggregator"])
async def test_kill_9_of_a_worker_mid_job_loses_and_doubles_nothing(
    stack: Stack, role: str
) -> None:
    job, kb, n = stack.name("kill"), stack.name("kb"), 800
    docs = documents(job, kb, n)
    stack.send(docs)
    stack.seal(job, n)
    await stack.wait_phase(job, "index", 50)
    stack.roles[role].restart(crash=True)
    await stack.wait_done(job, n)
    await stack.assert_kb(kb, docs)


@pytest.mark.parametrize("target", ["kafka", "postgres"])
async def test_a_backend_crash_and_restart_mid_job_ends_exact(stack: Stack, target: str) -> None:
    job, kb, n = stack.name(f"crash-{target}"), stack.name("kb"), 800
    docs = documents(job, kb, n)
    stack.send(docs)
    stack.seal(job, n)
    await stack.wait_phase(job, "index", 50)
    handle = stack.kafka if target == "kafka" else stack.postgres
    await asyncio.to_thread(handle.restart, crash=True)
    await stack.wait_done(job, n, within=240)
    await stack.assert_kb(kb, docs)
    for process in stack.roles.values():
        assert process.running, process.log_tail()


async def test_sigterm_stops_a_busy_worker_within_the_grace_and_loses_nothing(stack: Stack) -> None:
    job, kb, n = stack.name("term"), stack.name("kb"), 800
    docs = documents(job, kb, n)
    stack.send(docs)
    stack.seal(job, n)
    await stack.wait_phase(job, "extract", 50)
    consumer = stack.roles["producer"]
    started = time.monotonic()
    code = consumer.terminate(timeout=25)
    took = time.monotonic() - started
    assert code == 0, consumer.log_tail()
    assert took < 20, f"took {took:.1f}s to stop"
    consumer.start()
    consumer.wait_ready()
    await stack.wait_done(job, n)
    await stack.assert_kb(kb, docs)


async def status_events(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    records = await asyncio.to_thread(
        kcat_consume, stack.env.kafka_bootstrap, stack.env.topics["status"]
    )
    return [r.json() for r in records if r.key == job_id]


def index_status(event: dict[str, Any]) -> str:
    return str(next(p["status"] for p in event["phases"] if p["phase"] == "index"))


async def b_rate_while(stack: Stack, a: str, b: str, n: int, pause_a: bool) -> tuple[float, int]:
    """Feed A and B interleaved on one partition; once A's index has started, optionally pause
    it; return B's index rate (docs/s) from then until B completes, and A's frozen count."""
    kb_a, kb_b = stack.name("kb"), stack.name("kb")
    docs_a, docs_b = documents(a, kb_a, n), documents(b, kb_b, n)
    stack.send([d for pair in zip(docs_a, docs_b, strict=True) for d in pair])
    stack.seal(a, n)
    stack.seal(b, n)
    await stack.wait_phase(a, "index", 100)
    frozen = -1
    if pause_a:
        r = await stack.api.post(f"/v1/jobs/{a}/phases/index/pause")
        assert r.status_code == 202, r.text
        paused = await wait_until(
            lambda: status_events(stack, a),
            lambda ev: any(index_status(e) == "paused" for e in ev),
            30,
            f"{a} index paused on the status topic",
        )
        published = next(e for e in paused if index_status(e) == "paused")
        frozen = (await stack.phases(a))["index"][2]
        # Everything A's index did before the pause is in the published status, nothing after.
        assert next(p["processed"] for p in published["phases"] if p["phase"] == "index") == frozen
    b_start, t_start = (await stack.phases(b))["index"][2], time.monotonic()
    if pause_a:
        samples = []
        while time.monotonic() - t_start < 5:
            samples.append((await stack.phases(a))["index"][2])
            await asyncio.sleep(0.25)
        assert set(samples) == {frozen}, f"A's index moved while paused: {sorted(set(samples))}"
    await stack.wait_done(b, n)
    rate = (n - b_start) / (time.monotonic() - t_start)
    if pause_a:
        phases_a = await stack.phases(a)
        assert phases_a["index"][0] == "paused" and phases_a["index"][2] == frozen
        assert phases_a["index"][4] > 0, "A's documents should be parked"
        r = await stack.api.post(f"/v1/jobs/{a}/phases/index/resume")
        assert r.status_code == 202, r.text
    await stack.wait_done(a, n)
    await stack.assert_kb(kb_a, docs_a)
    await stack.assert_kb(kb_b, docs_b)
    versions = [e["version"] for e in await status_events(stack, a)]
    assert all(x < y for x, y in itertools.pairwise(versions)), versions
    return rate, frozen


async def test_pausing_one_jobs_index_leaves_another_job_on_the_same_partition_flowing(
    stack: Stack,
) -> None:
    n = 1500
    normal, _ = await b_rate_while(stack, stack.name("A0"), stack.name("B0"), n, pause_a=False)
    with_pause, frozen = await b_rate_while(stack, stack.name("A"), stack.name("B"), n, True)
    print(
        f"\nB index rate: {normal:.0f} docs/s with A running, {with_pause:.0f} docs/s with "
        f"A's index paused (ratio {with_pause / normal:.2f}; A frozen at {frozen} for 5 s)"
    )


async def test_pause_then_kill_9_the_worker_then_resume_loses_nothing(stack: Stack) -> None:
    job, kb, n = stack.name("pk"), stack.name("kb"), 800
    docs = documents(job, kb, n)
    stack.send(docs[:400])
    await stack.wait_phase(job, "index", 50)
    r = await stack.api.post(f"/v1/jobs/{job}/phases/index/pause")
    assert r.status_code == 202, r.text
    await wait_until(
        lambda: stack.phases(job), lambda p: p["index"][0] == "paused", 30, "index paused"
    )
    stack.send(docs[400:])
    stack.seal(job, n)
    await wait_until(lambda: stack.phases(job), lambda p: p["chunk"][2] == n, 120, "all chunked")
    stack.roles["consumer"].restart(crash=True)
    phases = await stack.phases(job)
    assert phases["index"][0] == "paused"
    assert phases["index"][2] + phases["index"][4] <= n
    r = await stack.api.post(f"/v1/jobs/{job}/phases/index/resume")
    assert r.status_code == 202, r.text
    await stack.wait_done(job, n)
    await stack.assert_kb(kb, docs)


async def test_a_bounded_schemathesis_run_finds_no_server_error(stack: Stack) -> None:
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).with_name("schemathesis"))
    result = await asyncio.to_thread(
        subprocess.run,
        [
            cli,
            "run",
            f"{stack.roles['api'].url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "20",
            "--phases",
            "examples,coverage,fuzzing",
            "--request-timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


async def test_scaling_out_and_in_mid_job_rebalances_without_loss(
    service_env: Any, service_processes: ServiceProcesses
) -> None:
    """A second process of every worker role joins mid-run, then the first ones leave (SIGTERM):
    partitions move twice under load, and every job still ends exact."""
    env: ServiceEnv = service_env(
        partitions_documents="6", partitions_chunks="6", partitions_default="3"
    )
    roles = ("producer", "consumer", "aggregator")
    first = service_processes(env, *roles)
    db = await asyncpg.create_pool(env.database_url, min_size=1, max_size=2)
    try:
        jobs = {
            f"scale-{env.suffix}-{j}": documents(
                f"scale-{env.suffix}-{j}", f"kb-s-{env.suffix}-{j}", 250
            )
            for j in range(6)
        }
        lines = [d.line() for group in zip(*jobs.values(), strict=True) for d in group]
        kcat_produce(env.kafka_bootstrap, env.topics["documents"], lines[: len(lines) // 2])
        service_processes(env, *roles)  # scale out: every group rebalances
        kcat_produce(env.kafka_bootstrap, env.topics["documents"], lines[len(lines) // 2 :])
        for job in jobs:
            kcat_produce(
                env.kafka_bootstrap,
                env.topics["control"],
                [(job, compact_json(control("seal", job, expected_documents=250)))],
            )
        for process in first:  # scale in: the first generation leaves mid-run
            assert process.terminate(timeout=25) == 0, process.log_tail()

        async def phases(job: str) -> dict[str, tuple[str, int, int, int, int]]:
            rows = await db.fetch(
                "SELECT * FROM ingestion_phase_status WHERE job_id = $1 ORDER BY position", job
            )
            return counters([dict(r) for r in rows])

        for job, docs in jobs.items():
            await wait_until(
                lambda job=job: phases(job), lambda p: p == all_done(250), 180, f"{job} completed"
            )
            expected = ExpectedKb.of(docs, env.chunking)
            rows = await db.fetch(
                "SELECT kb_id, doc_id, chunk_no, text FROM kb_chunks WHERE kb_id = $1",
                docs[0].kb_id,
            )
            assert_same_rows([tuple(r) for r in rows], expected.chunks, f"chunks of {job}")
    finally:
        await db.close()
