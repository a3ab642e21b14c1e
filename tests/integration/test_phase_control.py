"""Pause, resume and retry through Kafka and the HTTP API, against real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.adapters.postgres import PostgresStore
from service.api.app import create_app
from service.bootstrap import started_producer
from service.config import Settings
from service.contracts import Command, ControlMessage, UrisSource
from service.domain.jobs import JobStatus
from service.domain.phases import Phase
from service.pipeline.control import JobCommands
from tests.integration.conftest import (
    Feeder,
    SettingsFactory,
    counters,
    read_topic,
    running,
    text_doc,
    wait_for_job,
)

pytestmark = pytest.mark.integration


def prose(i: int) -> str:
    return " ".join(f"word{(i * 31 + k) % 97}" for k in range(250))


@asynccontextmanager
async def api_client(settings: Settings, store: PostgresStore) -> AsyncIterator[httpx.AsyncClient]:
    """The real FastAPI app over ASGI, wired to the test's store and topics."""

    async def ready() -> dict[str, Any]:
        return {"postgres": "ok"}

    async with started_producer(settings, "test-api") as producer:
        app = create_app(settings, store, JobCommands(settings, store, producer), ready)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def test_pausing_load_parks_incoming_documents_until_resume(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    settings = settings_factory()
    job, kb = f"pl-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    feeder = Feeder(settings)
    async with running(settings), api_client(settings, store) as api:
        await feeder.create(job, kb)
        await wait_for_job(store, job, until=lambda j: True)
        r = await api.post(f"/v1/jobs/{job}/phases/load/pause")
        assert r.status_code == 202, r.text
        await wait_for_job(store, job, until=lambda j: j.phases[0].status == "paused")
        await feeder.documents([text_doc(job, kb, f"d{i}", prose(i)) for i in range(15)])
        await feeder.seal(job, 15)
        parked = await wait_for_job(store, job, until=lambda j: j.phases[0].parked == 15)
        assert counters(parked)["load"] == ("paused", 15, 0, 0, 15)
        assert counters(parked)["extract"][1] == 0  # nothing went past the paused phase
        assert parked.status == JobStatus.PAUSED
        r = await api.post(f"/v1/jobs/{job}/phases/load/resume")
        assert r.status_code == 202, r.text
        done = await wait_for_job(store, job)
    assert counters(done) == {p: ("completed", 15, 15, 0, 0) for p in counters(done)}
    docs = await store.pool.fetchval("SELECT count(*) FROM kb_documents WHERE kb_id = $1", kb)
    assert docs == 15


async def test_pause_and_resume_100_times_while_running_ends_exact(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    settings = settings_factory(status_progress_interval_s=0.0, partitions_chunks=1)
    job, kb = f"pr-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    n = 300
    feeder = Feeder(settings)
    async with running(settings):
        await feeder.create(job, kb)
        send = asyncio.create_task(
            feeder.documents([text_doc(job, kb, f"d{i}", prose(i)) for i in range(n)])
        )
        for _ in range(100):
            for command in (Command.PAUSE, Command.RESUME):
                await feeder.command(ControlMessage(command=command, job_id=job, phase=Phase.INDEX))
        await send
        await feeder.seal(job, n)
        done = await wait_for_job(store, job, deadline_s=120)
        events = [
            e for e in await read_topic(settings, settings.topics.status) if e["job_id"] == job
        ]
        dlq = await read_topic(settings, settings.topics.dlq, idle_s=0.5)
    assert done.status == JobStatus.COMPLETED
    assert counters(done) == {p: ("completed", n, n, 0, 0) for p in counters(done)}
    rows = await store.pool.fetchval("SELECT count(*) FROM kb_documents WHERE kb_id = $1", kb)
    assert rows == n
    versions = [e["version"] for e in events]
    assert versions == sorted(set(versions))
    assert events[-1]["status"] == "completed"
    assert dlq == []  # every pause/resume was a valid transition


async def test_retry_reruns_failed_uri_documents_once_after_the_files_appear(
    settings_factory: SettingsFactory, store: PostgresStore, tmp_path: Path
) -> None:
    settings = settings_factory(fetch_attempts=2)
    job, kb = f"rt-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    files = [tmp_path / f"doc-{i}.txt" for i in range(10)]
    for i, f in enumerate(files[3:], start=3):
        f.write_text(prose(i))
    source = UrisSource(uris=[f.as_uri() for f in files])
    async with running(settings), api_client(settings, store) as api:
        r = await api.post(
            "/v1/jobs", json={"job_id": job, "kb_id": kb, "source": source.model_dump()}
        )
        assert r.status_code == 201, r.text
        failed = await wait_for_job(
            store, job, until=lambda j: j.status == JobStatus.FAILED and j.phases[1].processed == 7
        )
        assert counters(failed)["extract"] == ("failed", 10, 7, 3, 0)
        docs = (await api.get(f"/v1/jobs/{job}/documents", params={"outcome": "failed"})).json()
        assert sorted(d["doc_id"] for d in docs["items"]) == sorted(f.as_uri() for f in files[:3])
        assert {d["reason"] for d in docs["items"]} == {"fetch_failed"}
        for i, f in enumerate(files[:3]):
            f.write_text(prose(i))
        answers = await asyncio.gather(*(api.post(f"/v1/jobs/{job}/retry") for _ in range(20)))
        assert {a.status_code for a in answers} <= {202, 409}, [a.text for a in answers]
        assert 202 in {a.status_code for a in answers}
        done = await wait_for_job(store, job)
        dlq = await read_topic(settings, settings.topics.dlq, idle_s=0.5)
    assert done.status == JobStatus.COMPLETED
    assert counters(done) == {p: ("completed", 10, 10, 0, 0) for p in counters(done)}
    attempts = await store.pool.fetch(
        "SELECT doc_id, attempts FROM ingestion_document_status WHERE job_id = $1"
        " AND phase = 'extract' ORDER BY doc_id",
        job,
    )
    rerun = {r["doc_id"]: r["attempts"] for r in attempts}
    assert {d: a for d, a in rerun.items() if a != 1} == {f.as_uri(): 2 for f in files[:3]}
    assert {d["reason"] for d in dlq if d.get("doc_id")} == {"fetch_failed"}


async def test_a_running_phase_without_progress_is_flagged_stalled_then_cleared(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    settings = settings_factory(stall_after_s=1.0)
    job, kb = f"st-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    feeder = Feeder(settings)
    async with running(settings):
        await feeder.documents([text_doc(job, kb, f"d{i}", prose(i)) for i in range(3)])
        await feeder.seal(job, 5)  # two documents still to come: load has pending work
        stalled = await wait_for_job(store, job, until=lambda j: j.phases[0].stalled)
        assert stalled.phases[0].status == "running"
        await feeder.documents([text_doc(job, kb, f"d{i}", prose(i)) for i in range(3, 5)])
        done = await wait_for_job(store, job)
        events = [
            e for e in await read_topic(settings, settings.topics.status) if e["job_id"] == job
        ]
    assert not any(p.stalled for p in done.phases)
    flags = [e["phases"][0]["stalled"] for e in events]
    assert True in flags and flags[-1] is False
    assert any("load:stalled" in e["changed"] for e in events)


async def test_api_refusals_have_stable_codes(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    settings = settings_factory()
    job, kb = f"ap-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    feeder = Feeder(settings)
    async with running(settings), api_client(settings, store) as api:
        await feeder.documents([text_doc(job, kb, "d0", prose(0))])
        await feeder.seal(job, 1)
        await wait_for_job(store, job)
        cases = [
            ("post", f"/v1/jobs/{job}/phases/index/resume", 409, "invalid_transition"),
            ("post", f"/v1/jobs/{job}/pause", 409, "invalid_transition"),
            ("post", f"/v1/jobs/{job}/retry", 409, "invalid_transition"),
            ("post", "/v1/jobs/no-such-job/pause", 404, "job_not_found"),
            ("get", "/v1/jobs/no-such-job", 404, "job_not_found"),
            ("post", f"/v1/jobs/{job}/phases/polish/pause", 422, "invalid_input"),
            ("get", f"/v1/kbs/{kb}/search", 422, "invalid_input"),
            ("post", f"/v1/jobs/{job}/seal", 422, "invalid_input"),
        ]
        for method, url, status, code in cases:
            r = await api.request(method.upper(), url)
            assert (r.status_code, r.json()["code"]) == (status, code), (url, r.text)
        spec = (await api.get("/openapi.json")).json()
        assert "/v1/jobs/{job_id}/phases/{phase}/pause" in spec["paths"]


async def test_refused_commands_through_kafka_go_to_the_dlq_with_a_reason(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    settings = settings_factory()
    job, kb = f"dq-{uuid.uuid4().hex[:8]}", f"kb-{uuid.uuid4().hex[:8]}"
    feeder = Feeder(settings)
    async with running(settings):
        await feeder.documents([text_doc(job, kb, "d0", prose(0))])
        await feeder.seal(job, 1)
        await wait_for_job(store, job)
        await feeder.command(ControlMessage(command=Command.RESUME, job_id=job, phase=Phase.LOAD))
        await feeder.command(ControlMessage(command=Command.PAUSE, job_id="ghost-job"))
        await feeder.send(settings.topics.control, job, [b'{"type":"control","v":1}', b"{oops"])
        dlq: list[dict[str, Any]] = []
        async with asyncio.timeout(30):
            while len(dlq) < 4:
                dlq = await read_topic(settings, settings.topics.dlq, idle_s=0.5)
    assert sorted(d["reason"] for d in dlq) == [
        "invalid_json",
        "invalid_transition",
        "schema_violation",
        "unknown_job",
    ]


async def test_every_v1_route_requires_the_bearer_token_when_one_is_set(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    settings = settings_factory(api_token="s3cret-token")
    async with api_client(settings, store) as api:
        assert (await api.get("/v1/jobs")).status_code == 401
        denied = await api.get("/v1/jobs", headers={"Authorization": "Bearer nope"})
        assert denied.json()["code"] == "unauthorized"
        ok = await api.get("/v1/jobs", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
        assert (await api.get("/healthz")).status_code == 200  # probes need no token


async def test_jobs_are_listed_by_kb_and_status_page_by_page(
    settings_factory: SettingsFactory, store: PostgresStore
) -> None:
    settings = settings_factory()
    kb = f"kb-{uuid.uuid4().hex[:8]}"
    jobs = sorted(f"ls-{uuid.uuid4().hex[:8]}" for _ in range(3))
    async with running(settings), api_client(settings, store) as api:
        for job in jobs:
            r = await api.post("/v1/jobs", json={"job_id": job, "kb_id": kb})
            assert r.status_code == 201, r.text
            assert r.json()["status"] == "pending"
        seen: list[str] = []
        params: dict[str, Any] = {"kb_id": kb, "limit": 2}
        while True:
            page = (await api.get("/v1/jobs", params=params)).json()
            seen += [j["job_id"] for j in page["items"]]
            if page["next_cursor"] is None:
                break
            params["cursor"] = page["next_cursor"]
        assert seen == jobs
        pending = (await api.get("/v1/jobs", params={"kb_id": kb, "status": "pending"})).json()
        assert [j["job_id"] for j in pending["items"]] == jobs
        running_ = (await api.get("/v1/jobs", params={"kb_id": kb, "status": "running"})).json()
        assert running_["items"] == []
        bad = await api.get("/v1/jobs", params={"cursor": "%%%not-base64"})
        assert (bad.status_code, bad.json()["code"]) == (422, "invalid_cursor")
