"""A streaming reader of `multipart/related` request bodies (RFC 2046), for STOW-RS.

The body is never held in memory: `python-multipart` finds the boundaries as bytes arrive and each
part is spooled to a temporary file (in memory up to a threshold, then on disk) while its SHA-256
is computed. Parts are yielded as soon as they end, so a 1 GB study is stored part by part.
Accepts what real senders send: a preamble or leading CRLF before the first boundary, and no CRLF
after the closing one.
"""

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

READ_SIZE = 256 * 1024
MAX_PREAMBLE = 64 * 1024


class MultipartError(ValueError):
    """The body is not a readable multipart/related stream (no boundary, broken framing)."""


class BodyTooLarge(Exception):
    """The body exceeded the configured maximum while streaming (bodies sent chunked have no length)."""


@dataclass
class Part:
    headers: dict[str, str]
    file: tempfile.SpooledTemporaryFile
    size: int = 0
    sha256: str = ""
    complete: bool = False
    _hash: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def close(self) -> None:
        self.file.close()


def iter_parts(
    read: Callable[[int], bytes], boundary: str, *, max_bytes: int, spool_bytes: int
) -> Iterator[Part]:
    """Yield each part of the body read through `read(n)`; the last one has `complete=False` if cut off.

    Raises MultipartError when no part can be framed and BodyTooLarge past `max_bytes`.
    The caller closes each part after use.
    """
    state = _ParserState(spool_bytes)
    parser = MultipartParser(boundary.encode("latin-1"), state.callbacks())
    total = 0
    pending = _skip_preamble(read, boundary.encode("latin-1"))
    total += len(pending)
    try:
        while pending:
            if total > max_bytes:
                raise BodyTooLarge(total)
            parser.write(pending)
            yield from state.drain()
            pending = read(READ_SIZE)
            total += len(pending)
        parser.finalize()
    except MultipartParseError as exc:
        state.discard_current()
        raise MultipartError(str(exc)) from exc
    except BaseException:
        state.discard_current()
        raise
    yield from state.drain()
    if state.current is not None:
        yield state.current  # cut off before its closing boundary: complete stays False, never stored
    elif not state.seen_any:
        raise MultipartError("no multipart part found in the body")


def _skip_preamble(read: Callable[[int], bytes], boundary: bytes) -> bytes:
    """Drop anything before the first `--boundary` (RFC 2046 allows a preamble); returns the rest."""
    delimiter = b"--" + boundary
    buffer = b""
    while True:
        chunk = read(READ_SIZE)
        buffer += chunk
        index = buffer.find(delimiter)
        if index >= 0:
            return buffer[index:]
        if not chunk or len(buffer) > MAX_PREAMBLE:
            raise MultipartError("the body does not contain the boundary given in Content-Type")


class _ParserState:
    """Collects python-multipart's callbacks into Part objects."""

    def __init__(self, spool_bytes: int) -> None:
        self.spool_bytes = spool_bytes
        self.current: Part | None = None
        self.finished: list[Part] = []
        self.seen_any = False
        self._field = b""
        self._value = b""

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
        }

    def on_part_begin(self) -> None:
        self.seen_any = True
        spool = tempfile.SpooledTemporaryFile(max_size=self.spool_bytes)  # noqa: SIM115 - closed by the consumer
        self.current = Part(headers={}, file=spool)

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        self.current.headers[name] = self._value.decode("latin-1").strip()
        self._field = self._value = b""

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        self.current.file.write(chunk)
        self.current._hash.update(chunk)
        self.current.size += len(chunk)

    def on_part_end(self) -> None:
        part = self.current
        part.complete = True
        part.sha256 = part._hash.hexdigest()
        part.file.seek(0)
        self.finished.append(part)
        self.current = None

    def drain(self) -> Iterator[Part]:
        while self.finished:
            yield self.finished.pop(0)

    def discard_current(self) -> None:
        for part in [*self.finished, *([self.current] if self.current else [])]:
            part.close()
        self.finished.clear()
        self.current = None
