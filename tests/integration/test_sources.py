"""Reading sources for real: a local HTTP server on loopback and files on disk."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from service.adapters.sources import Fetcher, FetchError, directory_items, doc_id_for, uri_items

pytestmark = pytest.mark.integration


class _Handler(BaseHTTPRequestHandler):
    hits: ClassVar[dict[str, int]] = {}

    def log_message(self, *args: object) -> None:  # keep test output quiet
        return

    def do_GET(self) -> None:
        hits = _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if self.path == "/flaky" and hits < 3:
            self.send_response(503)
            self.end_headers()
            return
        if self.path == "/missing":
            self.send_response(404)
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(1.5)
        body = b"x" * 5000 if self.path == "/big" else b"<html><body>hello harbor</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        return  # a client that timed out on /slow hangs up mid-answer: expected here


@pytest.fixture
def http_base() -> Iterator[str]:
    _Handler.hits = {}
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_http_fetch_returns_content_and_type(http_base: str) -> None:
    fetcher = Fetcher(timeout_s=5, max_bytes=4096, attempts=3)
    try:
        got = await fetcher.fetch(f"{http_base}/page")
    finally:
        await fetcher.close()
    assert got.content == b"<html><body>hello harbor</body></html>"
    assert got.content_type == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("path", "attempts", "fails", "hits"),
    [
        ("/flaky", 3, None, 3),  # two 503s, then 200: transient, retried
        ("/flaky", 2, "HTTP 503", 2),  # gives up after its attempts
        ("/missing", 3, "HTTP 404", 1),  # permanent: no retry
        ("/big", 3, "over 4096 bytes", 1),  # the size limit: permanent
        ("/slow", 2, "ReadTimeout", 2),  # timeouts are transient: retried, then fail
    ],
)
async def test_http_failures_are_sorted_transient_or_permanent(
    http_base: str, path: str, attempts: int, fails: str | None, hits: int
) -> None:
    fetcher = Fetcher(timeout_s=0.5, max_bytes=4096, attempts=attempts)
    try:
        if fails is None:
            assert (await fetcher.fetch(f"{http_base}{path}")).content.startswith(b"<html>")
        else:
            with pytest.raises(FetchError, match=fails) as caught:
                await fetcher.fetch(f"{http_base}{path}")
            assert caught.value.transient is False
    finally:
        await fetcher.close()
    assert _Handler.hits[path] == hits


async def test_file_fetch_retries_a_missing_file_then_fails_and_refuses_nonsense(
    tmp_path: Path,
) -> None:
    fetcher = Fetcher(timeout_s=1, max_bytes=100, attempts=2)
    (tmp_path / "ok.txt").write_text("fine")
    (tmp_path / "big.txt").write_text("y" * 101)
    assert (await fetcher.fetch((tmp_path / "ok.txt").as_uri())).content == b"fine"
    with pytest.raises(FetchError, match=r"no such file.*after 2 attempts"):
        await fetcher.fetch((tmp_path / "nope.txt").as_uri())
    with pytest.raises(FetchError, match="over 100"):
        await fetcher.fetch((tmp_path / "big.txt").as_uri())
    with pytest.raises(FetchError, match="unsupported URI scheme"):
        await fetcher.fetch("ftp://example.invalid/x.txt")
    roomy = Fetcher(timeout_s=1, max_bytes=1 << 20, attempts=5)
    with pytest.raises(FetchError, match=r"cannot read.*Is a directory") as caught:
        await roomy.fetch(tmp_path.as_uri())  # a directory, not a file: permanent
    assert "attempts" not in caught.value.detail  # not retried: it will not change


def test_directory_items_are_stable_typed_and_validly_named(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    for name in ("b/z.md", "a.txt", "b/page one.html", "skip.exe", "c.pdf"):
        (tmp_path / name).write_bytes(b"x")
    items = directory_items(str(tmp_path))
    assert [(i.doc_id.split("@")[0], i.content_type) for i in items] == [
        ("a.txt", "text/plain"),
        ("b/page_one.html", "text/html"),
        ("b/z.md", "text/markdown"),
        ("c.pdf", "application/pdf"),
    ]
    assert items == directory_items(str(tmp_path))
    with pytest.raises(FetchError, match="not a readable directory"):
        directory_items(str(tmp_path / "absent"))
    with pytest.raises(FetchError, match="cannot list"):
        directory_items("/" + "0" * 5000)


def test_uri_items_take_the_type_from_the_extension_or_decide_later() -> None:
    items = uri_items(["https://example.org/docs/guide.md?rev=2", "https://example.org/api"])
    assert [i.content_type for i in items] == ["text/markdown", "application/octet-stream"]
    assert items[0].doc_id == doc_id_for("https://example.org/docs/guide.md?rev=2")
    assert "?" not in items[0].doc_id
