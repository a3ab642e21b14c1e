"""`kb-ingest`: run the service's roles, feed and steer jobs, search, and run it locally."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.adapters.postgres import JobRecord, PostgresStore
from service.config import Settings
from service.contracts import Command, ControlMessage, DocumentMessage, JobOptions, json_schemas
from service.devstack import dev_app
from service.domain.documents import content_type_for
from service.domain.jobs import JobStatus
from service.domain.phases import Phase, PhaseStatus
from service.logging import configure_logging

app = typer.Typer(
    name="kb-ingest",
    help="Knowledge-base ingestion: Kafka in, phased pipeline, searchable KB in Postgres.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(dev_app, name="dev")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")

REPO_SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
TEXT_TYPES = {"text/plain", "text/markdown", "text/html", "application/json"}


class CliError(Exception):
    """An expected failure, reported as one line with a non-zero exit status."""


def settings() -> Settings:
    """Settings from the environment, or a one-line error."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CliError(f"invalid setting KB_INGEST_{where.upper()}: {first['msg']}") from exc


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _with_store(action: Callable[[PostgresStore], Awaitable[T]]) -> T:
    from service.bootstrap import connect_store

    store = await connect_store(settings())
    try:
        return await action(store)
    finally:
        await store.pool.close()


# -- run, migrate, schemas --------------------------------------------------------------------


@app.command()
def run(
    role: Annotated[str, typer.Argument(help="producer | consumer | aggregator | api | all")],
) -> None:
    """Run one role of the service (or all of them) until SIGTERM."""
    from service.bootstrap import ROLES, run_service

    if role not in (*ROLES, "all"):
        raise CliError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}, all")
    s = settings()
    configure_logging(s.log_level)
    roles = ROLES if role == "all" else (role,)
    _run(run_service(s, roles))


@app.command()
def migrate() -> None:
    """Apply pending database migrations (idempotent)."""
    from service.adapters.migrations import migrate as apply
    from service.adapters.postgres import create_pool

    async def go() -> list[int]:
        dsn = settings().database_url.get_secret_value()
        try:
            pool = await create_pool(dsn, 1)
        except OSError as exc:
            raise CliError(f"cannot reach Postgres at {_where(dsn)}: {_one_line(exc)}") from exc
        try:
            async with pool.acquire() as conn:
                return await apply(conn)
        finally:
            await pool.close()

    done = _run(go())
    console.print(f"applied migrations: {done}" if done else "database is up to date")


@app.command()
def schemas(
    directory: Annotated[Path, typer.Option("--dir", help="where to write")] = REPO_SCHEMAS,
    check: Annotated[bool, typer.Option("--check", help="fail if files differ")] = False,
) -> None:
    """Write one JSON Schema per message type (or check the committed ones)."""
    stale = []
    for name, schema in json_schemas().items():
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        path = directory / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        raise CliError(f"schemas out of date: {', '.join(stale)} (run: kb-ingest schemas)")
    console.print("schemas are up to date" if check else f"wrote schemas to {directory}")


# -- feeding and steering jobs ----------------------------------------------------------------


def _files(paths: list[Path]) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for path in paths:
        if not path.exists():
            raise CliError(f"no such file or directory: {path}")
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in candidates:
            doc_id = file.relative_to(path).as_posix() if path.is_dir() else file.name
            if content_type_for(file.name) is not None:
                found.append((file, doc_id))
            elif not path.is_dir():
                raise CliError(f"unsupported file type: {file} (txt, md, html, json or pdf)")
    return found


def _document(job_id: str, kb_id: str, file: Path, doc_id: str) -> DocumentMessage:
    content_type = content_type_for(file.name)
    assert content_type is not None
    data = file.read_bytes()
    title = file.stem.replace("-", " ").replace("_", " ")
    if content_type in TEXT_TYPES:
        try:
            return DocumentMessage(
                job_id=job_id,
                kb_id=kb_id,
                doc_id=doc_id,
                content_type=content_type,
                text=data.decode(),
                title=title,
            )
        except UnicodeDecodeError:
            pass
    return DocumentMessage(
        job_id=job_id,
        kb_id=kb_id,
        doc_id=doc_id,
        content_type=content_type,
        content_b64=base64.b64encode(data).decode(),
        title=title,
    )


@app.command()
def submit(
    paths: Annotated[list[Path], typer.Argument(help="files or directories")],
    kb: Annotated[str, typer.Option("--kb", help="knowledge base id")],
    job: Annotated[str | None, typer.Option("--job", help="job id (default: new)")] = None,
    seal: Annotated[bool, typer.Option("--seal", help="seal the job with the count")] = False,
    max_failed: Annotated[
        int | None, typer.Option("--max-failed", help="max_failed_documents option")
    ] = None,
) -> None:
    """Send files through Kafka as documents of a job; prints the job id."""
    from service.bootstrap import prepare_topics, started_producer

    job_id = job or str(uuid.uuid4())
    files = _files(paths)
    s = settings()
    try:
        docs = [_document(job_id, kb, f, d) for f, d in files]
    except ValidationError as exc:
        raise CliError(f"invalid id: {exc.errors()[0]['msg']} (job {job_id!r}, kb {kb!r})") from exc

    async def go() -> None:
        await prepare_topics(s)
        async with started_producer(s, "kb-ingest-cli") as producer:
            key = job_id.encode()
            if max_failed is not None:
                create = ControlMessage(
                    command=Command.CREATE,
                    job_id=job_id,
                    kb_id=kb,
                    options=JobOptions(max_failed_documents=max_failed),
                )
                await producer.send_and_wait(s.topics.control, key=key, value=create.to_bytes())
            futures = [
                await producer.send(s.topics.documents, key=key, value=d.to_bytes()) for d in docs
            ]
            await asyncio.gather(*futures)
            if seal:
                message = ControlMessage(
                    command=Command.SEAL, job_id=job_id, kb_id=kb, expected_documents=len(docs)
                )
                await producer.send_and_wait(s.topics.control, key=key, value=message.to_bytes())

    _run(go())
    err.print(f"submitted {len(docs)} documents to job {job_id}" + (" (sealed)" if seal else ""))
    console.print(job_id)


def _phase_table(job: JobRecord) -> Table:
    table = Table(title=f"job {job.job_id} — {job.status.value} (kb {job.kb_id}, v{job.version})")
    for column in ("phase", "status", "total", "processed", "failed", "parked", "stalled"):
        table.add_column(column, justify="right" if column not in ("phase", "status") else "left")
    for p in job.phases:
        status = p.status.value + (" (pausing)" if p.phase in job.pause_requested else "")
        table.add_row(
            p.phase.value,
            status,
            str(p.total),
            str(p.processed),
            str(p.failed),
            str(p.parked),
            "yes" if p.stalled else "",
        )
    return table


async def _get_job(store: PostgresStore, job_id: str) -> JobRecord:
    job = await store.get_job(job_id)
    if job is None:
        raise CliError(f"no job {job_id!r}")
    return job


@app.command()
def status(job_id: Annotated[str, typer.Argument(help="job id")]) -> None:
    """Show a job's phases as a table."""
    job = _run(_with_store(lambda store: _get_job(store, job_id)))
    console.print(_phase_table(job))


def _phase_goal(job: JobRecord, index: int) -> int | None:
    if index == 0:
        return job.expected_documents if job.sealed else None
    upstream = job.phases[index - 1]
    return upstream.processed if upstream.status == PhaseStatus.COMPLETED else None


@app.command()
def watch(
    job_id: Annotated[str, typer.Argument(help="job id")],
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 3600,
) -> None:
    """Live progress bars per phase until the job ends (exit 0 completed, 1 failed)."""

    async def go(store: PostgresStore) -> JobRecord:
        job = await _get_job(store, job_id)
        columns = (
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            tasks = {
                p.phase: progress.add_task(p.phase.value, total=None, state="") for p in job.phases
            }
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                for i, p in enumerate(job.phases):
                    goal = _phase_goal(job, i)
                    done = p.processed + p.failed
                    state = p.status.value
                    if p.failed:
                        state += f", {p.failed} failed"
                    if p.parked:
                        state += f", {p.parked} parked"
                    if p.stalled:
                        state += ", STALLED"
                    progress.update(
                        tasks[p.phase],
                        completed=done,
                        total=goal if goal is not None else max(p.total, done) or None,
                        state=state,
                    )
                if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                    return job
                if loop.time() > deadline:
                    raise CliError(f"job {job_id} still {job.status.value} after {timeout:.0f}s")
                await asyncio.sleep(0.5)
                job = await _get_job(store, job_id)

    job = _run(_with_store(go))
    console.print(f"job {job.job_id}: {job.status.value}")
    raise typer.Exit(0 if job.status == JobStatus.COMPLETED else 1)


@app.command()
def search(
    kb: Annotated[str, typer.Argument(help="knowledge base id")],
    query: Annotated[str, typer.Argument(help="search words")],
    limit: Annotated[int, typer.Option(min=1, max=100)] = 5,
) -> None:
    """Ranked hits of a full-text search, with a snippet."""
    hits = _run(_with_store(lambda store: store.search(kb, query, limit)))
    if not hits:
        console.print(f"no hits for {query!r} in kb {kb}")
        return
    for rank, hit in enumerate(hits, 1):
        console.print(
            f"[bold]{rank}. {hit['doc_id']}[/bold] (chunk {hit['chunk_no']}, "
            f"score {hit['score']:.3f})"
        )
        snippet = escape(" ".join(hit["snippet"].split()))
        console.print("   " + snippet.replace("<b>", "[bold]").replace("</b>", "[/bold]"))


def _steer(command: Command, job_id: str, phase: Phase | None) -> None:
    from service.bootstrap import started_producer
    from service.pipeline.control import CommandConflict, JobCommands, JobNotFound

    async def go(store: PostgresStore) -> JobRecord:
        s = settings()
        async with started_producer(s, "kb-ingest-cli") as producer:
            try:
                return await JobCommands(s, store, producer).phase_command(command, job_id, phase)
            except JobNotFound as exc:
                raise CliError(f"no job {job_id!r}") from exc
            except CommandConflict as exc:
                raise CliError(f"{exc.code}: {exc.message}") from exc

    job = _run(_with_store(go))
    console.print(_phase_table(job))


PhaseOption = Annotated[Phase | None, typer.Option("--phase", help="one phase (default: all)")]


@app.command()
def pause(job_id: Annotated[str, typer.Argument()], phase: PhaseOption = None) -> None:
    """Pause a phase of a job (or every phase)."""
    _steer(Command.PAUSE, job_id, phase)


@app.command()
def resume(job_id: Annotated[str, typer.Argument()], phase: PhaseOption = None) -> None:
    """Resume a paused phase of a job (or every phase)."""
    _steer(Command.RESUME, job_id, phase)


@app.command()
def retry(job_id: Annotated[str, typer.Argument()], phase: PhaseOption = None) -> None:
    """Re-run the failed documents of a phase (or of every phase)."""
    _steer(Command.RETRY, job_id, phase)


@app.command()
def demo() -> None:
    """Start the local stack and the service, ingest the sample corpus, watch it, search it."""
    from service.demo import run_demo

    raise typer.Exit(run_demo())


def _where(dsn: str) -> str:
    """host:port/db of a database URL, without credentials."""
    from urllib.parse import urlparse

    parsed = urlparse(dsn)
    return f"{parsed.hostname}:{parsed.port or 5432}{parsed.path}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def main() -> None:
    """Console entry point: expected failures end with one line on stderr and exit status 1."""
    from aiokafka.errors import KafkaError

    # The CLI speaks for itself; aiokafka's retry chatter (e.g. leader elections) is noise here.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    try:
        app()
    except CliError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KafkaError as exc:
        typer.echo(f"error: Kafka: {_one_line(exc)}", err=True)
        sys.exit(1)
    except (OSError, TimeoutError) as exc:
        typer.echo(f"error: cannot reach a backend: {_one_line(exc)}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        typer.echo(f"error: {type(exc).__name__}: {_one_line(exc)}", err=True)
        sys.exit(1)
