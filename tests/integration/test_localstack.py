"""The local stack: the session's servers answer, servers survive a crash and restart, and the
`kb-ingest dev` commands start, reuse and stop a stack and fail cleanly on a busy port."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner

from service.devstack import dev_app
from service.localstack import (
    free_port,
    server_processes,
    start_kafka,
    start_postgres,
    stop_kafka,
    stop_postgres,
)
from tests.clients import psql
from tests.conftest import KafkaHandle, PostgresHandle

pytestmark = pytest.mark.integration


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_kafka_fixture_answers_an_admin_client(kafka_bootstrap: str) -> None:
    topics = await _topics(kafka_bootstrap)

    assert isinstance(topics, set)


def test_kafka_fixture_answers_kcat(kafka_bootstrap: str) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.skip("kcat is not installed (deploy/local/install-deps.sh installs it)")

    result = subprocess.run(
        [kcat, "-b", kafka_bootstrap, "-L"], capture_output=True, text=True, timeout=30, check=True
    )

    assert f"broker 1 at {kafka_bootstrap}" in result.stdout


def test_postgres_fixture_answerspsql(database_url: str) -> None:
    assert psql(database_url, "select 1") == "1"


async def test_broker_killed_and_restarted_keeps_topics_and_messages(tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_kafka, tmp_path / "kafka")
    broker = KafkaHandle(server.bootstrap, server)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic("survivor", num_partitions=1, replication_factor=1)]
            )
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait("survivor", b"before the crash")
        finally:
            await producer.stop()

        await asyncio.to_thread(broker.restart, crash=True)

        assert broker.server is not None and broker.server.port == server.port
        assert "survivor" in await _topics(broker.bootstrap)
        consumer = AIOKafkaConsumer(
            "survivor", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            async with asyncio.timeout(30):
                message = await consumer.getone()
        finally:
            await consumer.stop()
        assert message.value == b"before the crash"
    finally:
        assert broker.server is not None
        await asyncio.to_thread(stop_kafka, broker.server)


def test_postgres_killed_and_restarted_keeps_committed_rows(tmp_path: Path) -> None:
    server = start_postgres(tmp_path / "postgres", durable=False)
    database = PostgresHandle(server.url, server)
    try:
        psql(database.url, "create table survivor (note text); insert into survivor values ('x')")

        database.restart(crash=True)

        assert database.url == server.url
        assert psql(database.url, "select note from survivor") == "x"
    finally:
        assert database.server is not None
        stop_postgres(database.server)


# --- kb-ingest dev ------------------------------------------------------------------------


def _dev(dev_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `dev` command in its own process, as a shell would."""
    return subprocess.run(
        [sys.executable, "-c", "from service.devstack import dev_app; dev_app()", *args],
        env={**os.environ, "KB_INGEST_DEV_DIR": str(dev_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _leftovers(dev_dir: Path) -> list[int]:
    pids = server_processes(dev_dir)
    if shutil.which("pgrep"):
        found = subprocess.run(["pgrep", "-f", str(dev_dir)], capture_output=True, text=True)
        pids += [int(pid) for pid in found.stdout.split()]
    return sorted(set(pids))


@pytest.fixture
def dev_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "dev"
    yield directory
    if _leftovers(directory):  # a failed test must not leave servers behind
        _dev(directory, "down")


def test_dev_up_twice_reuses_the_stack_and_down_stops_it(dev_dir: Path) -> None:
    kafka_port, postgres_port = free_port(), free_port()
    ports = ["--kafka-port", str(kafka_port), "--postgres-port", str(postgres_port)]
    expected = (
        f"export KB_INGEST_KAFKA_BOOTSTRAP=127.0.0.1:{kafka_port}\n"
        f"export KB_INGEST_DATABASE_URL=postgresql://kb:kb@127.0.0.1:{postgres_port}/kb\n"
    )

    first = _dev(dev_dir, "up", *ports)
    assert (first.returncode, first.stdout) == (0, expected), first.stderr
    running = server_processes(dev_dir)
    second = _dev(dev_dir, "up", *ports)
    listed = _dev(dev_dir, "env")
    stopped = _dev(dev_dir, "down")
    again = _dev(dev_dir, "down")

    assert (second.returncode, second.stdout) == (0, expected), second.stderr
    assert "already running" in second.stderr
    assert server_processes(dev_dir) == [] and len(running) >= 2
    assert (listed.returncode, listed.stdout) == (0, expected)
    assert stopped.returncode == 0, stopped.stderr
    assert again.returncode == 0, again.stderr
    assert _leftovers(dev_dir) == []


def test_dev_up_on_a_busy_port_fails_with_one_line(dev_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = _dev(dev_dir, "up", "--kafka-port", str(port), "--postgres-port", str(free_port()))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: port {port} is already in use (wanted for kafka)"
    ]
    assert _leftovers(dev_dir) == []


def test_dev_up_on_a_busy_postgres_port_starts_nothing(dev_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = CliRunner().invoke(
            dev_app,
            ["up", "--kafka-port", str(free_port()), "--postgres-port", str(port)],
            env={"KB_INGEST_DEV_DIR": str(dev_dir)},
        )

    assert result.exit_code == 1
    assert result.stderr == f"error: port {port} is already in use (wanted for postgres)\n"
    assert _leftovers(dev_dir) == []


def test_dev_env_without_a_stack_fails_with_one_line(dev_dir: Path) -> None:
    result = CliRunner().invoke(dev_app, ["env"], env={"KB_INGEST_DEV_DIR": str(dev_dir)})

    assert result.exit_code == 1
    assert result.stderr == "error: no dev stack is running (start it with: kb-ingest dev up)\n"
