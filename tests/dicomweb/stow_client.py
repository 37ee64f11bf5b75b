"""Building STOW-RS bodies by hand, for the framings real senders produce that dicomweb-client does not."""

from collections.abc import Iterable, Iterator

import requests

BOUNDARY = "medai-test-boundary"


def multipart(files: Iterable[bytes], **framing) -> bytes:
    """The whole body at once; `framing` as for `multipart_chunks`."""
    return b"".join(multipart_chunks(files, **framing))


def multipart_chunks(
    files: Iterable[bytes],
    *,
    boundary: str = BOUNDARY,
    part_type: str = "application/dicom",
    leading_crlf: bool = False,
    closing_crlf: bool = True,
) -> Iterator[bytes]:
    if leading_crlf:
        yield b"\r\n"
    for data in files:
        yield f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + data + b"\r\n"
    yield f"--{boundary}--".encode() + (b"\r\n" if closing_crlf else b"")


def stow(base_url: str, token: str, body, *, study: str | None = None, boundary: str = BOUNDARY,
         content_type: str | None = None) -> requests.Response:
    url = f"{base_url}/dicomweb/studies" + (f"/{study}" if study else "")
    content_type = content_type or f'multipart/related; type="application/dicom"; boundary={boundary}'
    return requests.post(url, data=body, headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
                         timeout=120)


def failures(response: requests.Response) -> list[tuple[str | None, int]]:
    """(SOP Instance UID, FailureReason) of each failed instance in a Store Instances Response."""
    items = response.json().get("00081198", {}).get("Value", [])
    return [(item.get("00081155", {}).get("Value", [None])[0], item["00081197"]["Value"][0]) for item in items]


def stored(response: requests.Response) -> list[str]:
    items = response.json().get("00081199", {}).get("Value", [])
    return [item["00081155"]["Value"][0] for item in items]
