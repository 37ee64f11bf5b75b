"""Writing `multipart/related` response bodies (RFC 2387; PS3.18 8.7.1.2) as a stream of byte chunks.

Part bodies are iterables consumed only while the response is sent, so an instance read from object
storage passes through in its storage chunks: a study of any size costs constant memory. When every
part's length is known up front (stored instances), so is the body's, and clients get a
Content-Length instead of chunked transfer coding.
"""

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

CRLF = b"\r\n"


@dataclass(frozen=True)
class OutgoingPart:
    """One body part: its Content-Type (with parameters), its length in bytes if known, and its bytes."""

    content_type: str
    length: int | None
    chunks: Iterable[bytes]


def new_boundary() -> str:
    """A boundary no stored byte sequence will contain by chance (a random 128-bit hex string)."""
    return f"medai-{uuid.uuid4().hex}"


def content_type(part_type: str, boundary: str) -> str:
    """The response's Content-Type; PS3.18 requires `type` to name the media type of the parts."""
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def _head(boundary: str, part: OutgoingPart) -> bytes:
    head = f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
    if part.length is not None:
        head += f"Content-Length: {part.length}\r\n"
    return (head + "\r\n").encode("ascii")


def _closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("ascii")


def stream(boundary: str, parts: Iterable[OutgoingPart]) -> Iterator[bytes]:
    """The body chunk by chunk: each part's head, then its chunks. The CRLF that ends a part belongs to
    the next delimiter (RFC 2046 5.1.1) and is sent with it, so framing costs no extra writes."""
    pending = b""
    for part in parts:
        yield pending + _head(boundary, part)
        yield from part.chunks
        pending = CRLF
    yield pending + _closing(boundary)


def body_length(boundary: str, parts: Sequence[OutgoingPart]) -> int:
    """The exact number of bytes `stream` produces; every part must declare its length."""
    if any(part.length is None for part in parts):
        raise ValueError("the body's length needs every part's length")
    return len(_closing(boundary)) + sum(len(_head(boundary, p)) + p.length + len(CRLF) for p in parts)
