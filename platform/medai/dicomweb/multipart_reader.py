"""A streaming reader of `multipart/related` request bodies (RFC 2046), for STOW-RS.

The body is never held in memory: it is read a MiB at a time and each part is kept in memory up to a
threshold (a CT slice is 0.5 MB), past it in a temporary file. Delimiters are found with `bytes.find`
over the buffer, a part's bytes are copied out of it once (twice if it spans two reads), and its
SHA-256, the largest cost of reading, is computed by another thread while the caller parses the part.
Parts are yielded as soon as they end, so a 1 GB study is stored part by part. Accepts what real
senders send: a preamble or leading CRLF before the first boundary, transport padding after a
delimiter, and no CRLF after the closing one. A part whose bytes cannot be kept (its temporary file's
disk is full) is read past and yielded with the error, so the parts after it are still read: whether
that fails the request is the caller's to decide.
"""

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import BinaryIO

READ_SIZE = 1024 * 1024
MAX_PREAMBLE = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024  # one part's header block; a STOW part has one or two short headers
HEAD_BYTES = 64 * 1024  # kept of a part that could not be kept: its DICOM header, to name the instance
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_PADDING = b" \t"


class MultipartError(ValueError):
    """The body is not a readable multipart/related stream (no boundary, broken framing)."""


class BodyTooLarge(Exception):
    """The body exceeded the configured maximum while streaming (bodies sent chunked have no length)."""


@dataclass
class Part:
    headers: dict[str, str]
    file: BinaryIO
    size: int = 0
    digest: "str | Future[str]" = ""  # a part's SHA-256 is computed by another thread while it is parsed
    complete: bool = False
    failure: OSError | None = None  # the part could not be kept; `file` holds only its first bytes

    @property
    def sha256(self) -> str:
        if isinstance(self.digest, Future):
            self.digest = self.digest.result()
        return self.digest

    @sha256.setter
    def sha256(self, value: str) -> None:
        self.digest = value

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
    reader = _Reader(read, boundary.encode("latin-1"), max_bytes)
    hasher = ThreadPoolExecutor(1, thread_name_prefix="stow-sha256")  # hashlib lets go of the GIL
    spool: _Spool | None = None
    try:
        if not reader.opening():
            raise MultipartError("no multipart part found in the body")
        while True:
            headers = reader.headers()
            if headers is None:  # cut off inside the header block
                yield _Spool(spool_bytes, hasher).part({}, complete=False)
                return
            spool = _Spool(spool_bytes, hasher)
            more = reader.data(spool.write)
            part = spool.part(headers, complete=more is not None)
            spool = None
            yield part
            if not more:
                break
        reader.drain()
    except BaseException:
        if spool is not None:
            spool.discard()
        raise
    finally:
        hasher.shutdown(wait=False)  # digests still being computed finish for the parts that wait on them


class _Reader:
    """The framing of one body: a buffer of what was read and not yet consumed, and the delimiters."""

    def __init__(self, read: Callable[[int], bytes], boundary: bytes, max_bytes: int) -> None:
        self._read = read
        self.max_bytes = max_bytes
        self.total = 0
        self.eof = False
        self.buffer = bytearray()
        self.dash_boundary = b"--" + boundary
        self.delimiter = b"\r\n--" + boundary  # the CRLF before a delimiter belongs to it, not to the data

    def fill(self) -> bool:
        """Read more into the buffer; False at the end of the body."""
        if self.eof:
            return False
        chunk = self._read(READ_SIZE)
        if not chunk:
            self.eof = True
            return False
        self.total += len(chunk)
        if self.total > self.max_bytes:
            raise BodyTooLarge(self.total)
        self.buffer += chunk
        return True

    def opening(self) -> bool:
        """Skip the preamble and the first delimiter; True if a part follows, False for an empty body."""
        while (index := self.buffer.find(self.dash_boundary)) < 0:
            if len(self.buffer) > MAX_PREAMBLE or not self.fill():
                raise MultipartError("the body does not contain the boundary given in Content-Type")
        while (after := self._after_delimiter(index + len(self.dash_boundary))) is None:
            if not self.fill():
                raise MultipartError("the body ends inside its first boundary")
        if after is False:
            raise MultipartError("no CRLF after the first boundary")
        more, consumed = after
        del self.buffer[:consumed]
        return more

    def headers(self) -> dict[str, str] | None:
        """The part's header fields (names lowercased); None if the body ends before they do."""
        while len(self.buffer) < 2:
            if not self.fill():
                return None
        if self.buffer.startswith(b"\r\n"):  # no header fields at all
            del self.buffer[:2]
            return {}
        start = 0
        while (end := self.buffer.find(b"\r\n\r\n", start)) < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                raise MultipartError("a part's header block is too long")
            start = max(0, len(self.buffer) - 3)
            if not self.fill():
                return None
        if end > MAX_HEADER_BYTES:
            raise MultipartError("a part's header block is too long")
        block = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        headers: dict[str, str] = {}
        for line in block.split(b"\r\n"):
            name, colon, value = line.partition(b":")
            if not colon or not _HEADER_NAME.fullmatch(name):
                raise MultipartError(f"malformed part header line {line[:80]!r}")
            headers[name.decode("latin-1").lower()] = value.decode("latin-1").strip()
        return headers

    def data(self, write: Callable[[memoryview], None]) -> bool | None:
        """Pass the part's data to `write` up to its closing delimiter. True if another part follows,
        False after the closing delimiter, None if the body ends first (the part is incomplete)."""
        delimiter = self.delimiter
        keep = len(delimiter) + 1  # a delimiter may straddle two reads
        start = 0
        while True:
            index = self.buffer.find(delimiter, start)
            if index < 0:
                self._emit(write, len(self.buffer) - keep)
                start = 0
            else:
                after = self._after_delimiter(index + len(delimiter))
                if after is False:  # the delimiter's bytes followed by something else: data, as RFC 2046 has it
                    start = index + 1
                    continue
                if after is not None:
                    more, consumed = after
                    self._emit(write, index)
                    del self.buffer[: consumed - index]
                    return more
                self._emit(write, index)  # not enough read yet to tell what follows the delimiter
                start = 0
            if not self.fill():
                self._emit(write, len(self.buffer))
                return None

    def _emit(self, write: Callable[[memoryview], None], end: int) -> None:
        """Hand the first `end` bytes of the buffer to `write` without copying them, then drop them."""
        if end <= 0:
            return
        with memoryview(self.buffer) as view, view[:end] as piece:
            write(piece)
        del self.buffer[:end]

    def _after_delimiter(self, at: int) -> tuple[bool, int] | bool | None:
        """What follows a delimiter that ends at `at`: (another part follows?, bytes up to the end of
        the delimiter line); False when this is no delimiter; None when more must be read to tell."""
        buffer = self.buffer
        if len(buffer) < at + 2:
            return None
        if buffer.startswith(b"--", at):
            return False, len(buffer)  # the closing delimiter: the epilogue is ignored
        if buffer.startswith(b"\r\n", at):
            return True, at + 2
        if buffer[at] not in _PADDING:
            return False
        end = at
        while end < len(buffer) and buffer[end] in _PADDING:
            end += 1
        if buffer.startswith(b"\r\n", end):
            return True, end + 2
        if end == len(buffer) or (end + 1 == len(buffer) and buffer[end] == 0x0D):
            return None
        raise MultipartError("no CRLF after a boundary's transport padding")

    def drain(self) -> None:
        """Read the epilogue to the end, so the body is consumed and still counted against the limit."""
        self.buffer = bytearray()
        while self.fill():
            self.buffer.clear()


class _Spool:
    """One part's bytes as they arrive: in memory up to `spool_bytes`, beyond that in a temporary file."""

    def __init__(self, spool_bytes: int, hasher: ThreadPoolExecutor) -> None:
        self.limit = spool_bytes
        self.hasher = hasher
        self.chunks: list[bytes] = []
        self.size = 0
        self.file: BinaryIO | None = None
        self.digest = hashlib.sha256()  # of the bytes in the file
        self.failure: OSError | None = None
        self.head = b""  # what is left of a part that could not be kept

    def write(self, data: memoryview) -> None:
        self.size += len(data)
        if self.failure is not None:
            return  # the rest of a part that cannot be kept is read past, so the parts after it still are
        try:
            self._keep(data)
        except OSError as exc:
            self._give_up(exc)

    def _keep(self, data: memoryview) -> None:
        if self.file is not None:
            self.file.write(data)
            self.digest.update(data)
            return
        self.chunks.append(bytes(data))
        if self.size > self.limit:
            self.file = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the Part, closed by the consumer
            for chunk in self.chunks:
                self.file.write(chunk)
                self.digest.update(chunk)
            self.chunks = []

    def _give_up(self, failure: OSError) -> None:
        """Keep the error and the part's first bytes, which say what instance it was; drop the rest."""
        self.failure = failure
        if self.chunks:
            self.head = b"".join(self.chunks)[:HEAD_BYTES]
        elif self.file is not None:
            with suppress(OSError):  # read from the disk, past the buffer that could not be written out
                self.head = os.pread(self.file.fileno(), HEAD_BYTES, 0)
        self.discard()

    def part(self, headers: dict[str, str], *, complete: bool) -> Part:
        if self.file is not None and self.failure is None:
            try:
                self.file.flush()  # a full disk may tell only when the last buffered bytes go out
            except OSError as exc:
                self._give_up(exc)
        if self.failure is not None:
            return Part(headers, io.BytesIO(self.head), self.size, "", complete, self.failure)
        if self.file is None:
            data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            self.chunks = []
            file: BinaryIO = io.BytesIO(data)  # shares `data`: reading it whole copies nothing
            digest: str | Future[str] = self.hasher.submit(_sha256, data) if complete else ""
        else:
            file = self.file
            file.seek(0)
            digest = self.digest.hexdigest()
        return Part(headers, file, self.size, digest, complete)

    def discard(self) -> None:
        self.chunks = []
        if self.file is not None:
            with suppress(OSError):  # closing a file whose buffer could not be written out fails again
                self.file.close()
            self.file = None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
