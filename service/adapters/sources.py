"""Reading documents from outside: `file://` and `http(s)://` URIs, and directory listings."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from service.domain.documents import ID_PATTERN, content_type_for

_ID = re.compile(ID_PATTERN)
_NOT_ID_CHAR = re.compile(r"[^A-Za-z0-9._:/@-]")
OCTET_STREAM = "application/octet-stream"
# Worth another attempt; anything else (a name too long, a directory, ...) will not change.
_TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EINTR, errno.EIO, errno.ETIMEDOUT, errno.EBUSY})


class FetchError(Exception):
    """A URI could not be read; `transient` says whether trying again may help."""

    def __init__(self, detail: str, transient: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.transient = transient


@dataclass(frozen=True)
class Fetched:
    content: bytes
    content_type: str | None


@dataclass(frozen=True)
class SourceItem:
    doc_id: str
    uri: str
    content_type: str


def doc_id_for(name: str) -> str:
    """A valid document id for a path or URI: itself when valid, else a readable hashed form."""
    if _ID.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    readable = _NOT_ID_CHAR.sub("_", name)[-150:]
    return f"{readable}@{digest}"


def directory_items(path: str) -> list[SourceItem]:
    """Every file of a supported type under `path`, in a stable order, ids relative to it.

    Raises:
        FetchError: the directory does not exist or cannot be read.
    """
    root = Path(path)
    try:
        if not root.is_dir():
            raise FetchError(f"not a readable directory: {path[:300]}", transient=False)
        files = sorted(p for p in root.rglob("*") if p.is_file())
    except OSError as exc:
        raise FetchError(f"cannot list {path[:300]}: {exc.strerror}", transient=False) from exc
    items = []
    for file in files:
        content_type = content_type_for(file.name)
        if content_type is None:
            continue
        rel = file.relative_to(root).as_posix()
        items.append(SourceItem(doc_id_for(rel), file.resolve().as_uri(), content_type))
    return items


def uri_items(uris: list[str]) -> list[SourceItem]:
    """One item per URI; content type from the extension, else decided when fetched."""
    items = []
    for uri in uris:
        name = urlparse(uri).path.rsplit("/", 1)[-1]
        content_type = content_type_for(name) or OCTET_STREAM
        items.append(SourceItem(doc_id_for(uri), uri, content_type))
    return items


class Fetcher:
    """Reads URIs with a timeout, a size limit and a few attempts for transient failures."""

    def __init__(self, timeout_s: float, max_bytes: int, attempts: int) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.attempts = attempts
        self._client: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def fetch(self, uri: str) -> Fetched:
        """The content behind `uri`, retried with backoff while failures look transient.

        Raises:
            FetchError: the URI could not be read (after the attempts, for transient causes).
        """
        delay = 0.2
        for attempt in range(1, self.attempts + 1):
            try:
                return await self._fetch_once(uri)
            except FetchError as exc:
                if not exc.transient:
                    raise
                if attempt == self.attempts:
                    raise FetchError(f"{exc.detail} (after {attempt} attempts)", False) from exc
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def _fetch_once(self, uri: str) -> Fetched:
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return await asyncio.to_thread(self._read_file, Path(unquote(parsed.path)))
        if parsed.scheme in ("http", "https"):
            return await self._get(uri)
        raise FetchError(f"unsupported URI scheme {parsed.scheme!r}", transient=False)

    def _read_file(self, path: Path) -> Fetched:
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise FetchError(f"{path} is {size} bytes, over {self.max_bytes}", False)
            return Fetched(path.read_bytes(), None)
        except ValueError as exc:  # e.g. an embedded NUL in the path
            raise FetchError(f"unusable file path: {exc}", transient=False) from exc
        except FileNotFoundError as exc:
            # Files may still be on their way (a retry later succeeds): try again, then fail.
            raise FetchError(f"no such file: {str(path)[:300]}", transient=True) from exc
        except OSError as exc:
            transient = exc.errno in _TRANSIENT_ERRNOS
            raise FetchError(f"cannot read {str(path)[:300]}: {exc.strerror}", transient) from exc

    async def _get(self, uri: str) -> Fetched:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=True)
        try:
            async with self._client.stream("GET", uri) as response:
                if response.status_code >= 500 or response.status_code == 429:
                    raise FetchError(f"HTTP {response.status_code} from {uri}", transient=True)
                if response.status_code >= 400:
                    raise FetchError(f"HTTP {response.status_code} from {uri}", transient=False)
                body = bytearray()
                async for part in response.aiter_bytes():
                    body.extend(part)
                    if len(body) > self.max_bytes:
                        raise FetchError(f"{uri} is over {self.max_bytes} bytes", False)
                content_type = response.headers.get("content-type")
                return Fetched(bytes(body), content_type)
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__} fetching {uri}: {exc}", True) from exc
