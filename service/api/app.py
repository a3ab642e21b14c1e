"""The HTTP API: job creation and commands through `kb.control`, reads from Postgres."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.adapters.postgres import JobRecord, PostgresStore
from service.config import Settings
from service.contracts import MAX_COUNT, Command, Id, JobOptions, PhaseView, Source
from service.domain.jobs import JobStatus, LegacyStatus, current_phase, legacy_status
from service.domain.phases import Phase
from service.pipeline.aggregator import phase_view
from service.pipeline.control import CommandConflict, JobCommands, JobNotFound


class ApiError(Exception):
    """An error answered as JSON with a stable `code`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class JobView(BaseModel):
    """A job as served: derived and legacy status, current phase and every phase."""

    job_id: str
    kb_id: str | None
    status: JobStatus
    legacy_status: LegacyStatus
    current_phase: Phase | None
    sealed: bool
    expected_documents: int | None
    options: JobOptions
    source: dict[str, Any] | None
    version: int
    pause_requested: list[Phase]
    phases: list[PhaseView]
    created_at: Any
    updated_at: Any


class JobPage(BaseModel):
    items: list[JobView]
    next_cursor: str | None


class CreateJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: Id | None = None
    kb_id: Id
    options: JobOptions | None = None
    source: Source | None = None


class SealJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expected_documents: int = Field(ge=0, le=MAX_COUNT)


class DocumentOutcome(BaseModel):
    doc_id: str
    phase: Phase
    outcome: str
    reason: str | None
    error: str | None
    attempts: int
    first_seen_at: Any
    updated_at: Any


class DocumentPage(BaseModel):
    items: list[DocumentOutcome]
    next_cursor: str | None


class SearchHit(BaseModel):
    doc_id: str
    chunk_no: int
    title: str | None
    content_type: str
    score: float
    snippet: str


class SearchResult(BaseModel):
    kb_id: str
    query: str
    hits: list[SearchHit]


def job_view(job: JobRecord) -> JobView:
    """The API shape of a job."""
    status = job.status
    return JobView(
        job_id=job.job_id,
        kb_id=job.kb_id,
        status=status,
        legacy_status=legacy_status(status),
        current_phase=current_phase(job.phases),
        sealed=job.sealed,
        expected_documents=job.expected_documents,
        options=job.options,
        source=job.source,
        version=job.version,
        pause_requested=sorted(job.pause_requested, key=list(Phase).index),
        phases=[phase_view(job, i) for i in range(len(job.phases))],
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


def _encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ApiError(422, "invalid_cursor", "cursor is not one this API handed out") from exc


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody},
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


def create_app(
    settings: Settings,
    store: PostgresStore,
    commands: JobCommands,
    readiness: Callable[[], Awaitable[dict[str, Any]]],
) -> FastAPI:
    """The FastAPI application, wired to the given store and command use case."""
    app = FastAPI(
        title="kb-ingest",
        version="1",
        description="Knowledge-base ingestion: jobs, phases, pause/resume/retry, search.",
    )

    async def authorize(request: Request) -> None:
        token = settings.api_token
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        expected = token.get_secret_value()
        if scheme.lower() != "bearer" or not secrets.compare_digest(given, expected):
            raise ApiError(401, "unauthorized", "a valid Authorization: Bearer token is required")

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorize)], responses=ERRORS)

    async def existing(job_id: str) -> JobRecord:
        job = await store.get_job(job_id)
        if job is None:
            raise ApiError(404, "job_not_found", f"no job {job_id!r}")
        return job

    @v1.post("/jobs", status_code=201, response_model=JobView)
    async def create_job(body: CreateJob) -> Any:
        try:
            job_id, job = await commands.create(body.job_id, body.kb_id, body.options, body.source)
        except CommandConflict as exc:
            raise ApiError(409, exc.code, exc.message) from exc
        if job is None:
            return JSONResponse(status_code=202, content={"job_id": job_id, "accepted": True})
        return job_view(job)

    @v1.get("/jobs/{job_id}", response_model=JobView)
    async def get_job(job_id: str) -> JobView:
        return job_view(await existing(job_id))

    @v1.get("/jobs", response_model=JobPage)
    async def list_jobs(
        status: JobStatus | None = None,
        kb_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> JobPage:
        jobs = await store.list_jobs(
            status.value if status else None, kb_id, limit, _decode_cursor(cursor)
        )
        next_cursor = _encode_cursor(jobs[-1].job_id) if len(jobs) == limit else None
        return JobPage(items=[job_view(j) for j in jobs], next_cursor=next_cursor)

    @v1.post("/jobs/{job_id}/seal", response_model=JobView)
    async def seal_job(job_id: str, body: SealJob) -> JobView:
        await existing(job_id)
        try:
            return job_view(await commands.seal(job_id, body.expected_documents))
        except CommandConflict as exc:
            raise ApiError(409, exc.code, exc.message) from exc

    async def command(name: Command, job_id: str, phase: Phase | None) -> JSONResponse:
        try:
            job = await commands.phase_command(name, job_id, phase)
        except JobNotFound as exc:
            raise ApiError(404, "job_not_found", f"no job {job_id!r}") from exc
        except CommandConflict as exc:
            raise ApiError(409, exc.code, exc.message) from exc
        return JSONResponse(status_code=202, content=job_view(job).model_dump(mode="json"))

    for name in (Command.PAUSE, Command.RESUME, Command.RETRY):

        def job_route(name: Command = name) -> Callable[[str], Awaitable[JSONResponse]]:
            async def route(job_id: str) -> JSONResponse:
                return await command(name, job_id, None)

            return route

        def phase_route(name: Command = name) -> Callable[[str, Phase], Awaitable[JSONResponse]]:
            async def route(job_id: str, phase: Phase) -> JSONResponse:
                return await command(name, job_id, phase)

            return route

        v1.add_api_route(
            f"/jobs/{{job_id}}/{name.value}",
            job_route(),
            methods=["POST"],
            status_code=202,
            response_model=JobView,
            name=f"{name.value}_job",
        )
        v1.add_api_route(
            f"/jobs/{{job_id}}/phases/{{phase}}/{name.value}",
            phase_route(),
            methods=["POST"],
            status_code=202,
            response_model=JobView,
            name=f"{name.value}_phase",
        )

    @v1.get("/jobs/{job_id}/documents", response_model=DocumentPage)
    async def job_documents(
        job_id: str,
        phase: Phase | None = None,
        outcome: Annotated[
            str | None, Query(pattern="^(processed|failed|parked|retrying)$")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: str | None = None,
    ) -> DocumentPage:
        await existing(job_id)
        after = _decode_cursor(cursor)
        position = tuple(after.split("\n", 1)) if after is not None else None
        if position is not None and len(position) != 2:
            raise ApiError(422, "invalid_cursor", "cursor is not one this API handed out")
        rows = await store.job_documents(job_id, phase, outcome, limit, position)
        items = [DocumentOutcome(**r) for r in rows]
        last = items[-1] if items else None
        next_cursor = (
            _encode_cursor(f"{last.doc_id}\n{last.phase.value}")
            if last is not None and len(items) == limit
            else None
        )
        return DocumentPage(items=items, next_cursor=next_cursor)

    @v1.get("/kbs/{kb_id}/search", response_model=SearchResult)
    async def search(
        kb_id: str,
        q: Annotated[str, Query(min_length=1, max_length=1000)],
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> SearchResult:
        hits = await store.search(kb_id, q, limit)
        return SearchResult(kb_id=kb_id, query=q, hits=[SearchHit(**h) for h in hits])

    app.include_router(v1)

    @app.middleware("http")
    async def refuse_nul(request: Request, call_next: Any) -> Any:
        # Postgres text cannot hold NUL: refuse it at the door instead of failing deeper.
        if "\x00" in request.url.path or "%00" in str(request.url.query):
            return JSONResponse(
                status_code=422,
                content={"code": "invalid_input", "message": "NUL characters are not allowed"},
            )
        return await call_next(request)

    add_health_routes(app, readiness)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status, content={"code": exc.code, "message": exc.message}
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_input(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return JSONResponse(
            status_code=422,
            content={
                "code": "invalid_input",
                "message": "request is not valid",
                "details": details,
            },
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            status_code=exc.status_code,
            content={"code": codes.get(exc.status_code, "http_error"), "message": str(exc.detail)},
        )

    return app


def add_health_routes(app: FastAPI, readiness: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    """`/healthz`, `/readyz` and `/metrics`, shared by the API and the workers' health server."""

    @app.get("/healthz", include_in_schema=True)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = await readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            status_code=200 if ready else 503,
            content={"status": "ready" if ready else "not_ready", "checks": checks},
        )

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest().decode(), media_type=CONTENT_TYPE_LATEST)


def health_app(readiness: Callable[[], Awaitable[dict[str, Any]]]) -> FastAPI:
    """The small app the worker roles serve on the health port."""
    app = FastAPI(title="kb-ingest worker health", openapi_url=None, docs_url=None)
    add_health_routes(app, readiness)
    return app
