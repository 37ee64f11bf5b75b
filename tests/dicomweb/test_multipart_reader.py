"""The STOW body reader on framings cut at every kind of place between two reads."""

import hashlib

import pytest

from medai.dicomweb.multipart_reader import BodyTooLarge, MultipartError, iter_parts

BOUNDARY = "b0und4ry"


def body(parts: list[bytes], *, preamble=b"", padding=b"", epilogue=b"\r\n") -> bytes:
    out = preamble
    for data in parts:
        out += b"--" + BOUNDARY.encode() + padding + b"\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n"
    return out + b"--" + BOUNDARY.encode() + b"--" + epilogue


def read_all(data: bytes, step: int, *, spool_bytes=64, max_bytes=10**9) -> list[tuple]:
    position = 0

    def read(n: int) -> bytes:
        nonlocal position
        chunk = data[position : position + min(n, step)]
        position += len(chunk)
        return chunk

    found = []
    for part in iter_parts(read, BOUNDARY, max_bytes=max_bytes, spool_bytes=spool_bytes):
        found.append((part.file.read(), part.size, part.sha256, part.complete) if part.complete else None)
        part.close()
    return found


# Data that looks like a delimiter without being one, and parts in memory and spooled to disk.
PARTS = [b"", b"x", b"\r\n--" + BOUNDARY.encode() + b"x\r\n", b"\r\n--" + BOUNDARY[:5].encode(), bytes(range(256)) * 3]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 1000, 1 << 20])
def test_parts_come_out_whole_whatever_the_reads(step):
    sent = body(PARTS, preamble=b"ignored preamble\r\n", padding=b" \t", epilogue=b"\r\nepilogue")
    expected = [(data, len(data), hashlib.sha256(data).hexdigest(), True) for data in PARTS]
    assert read_all(sent, step) == expected
    assert read_all(body(PARTS, epilogue=b""), step) == expected


@pytest.mark.parametrize("cut", [3, 10, 40, 200, 300])  # 1 or 2 leave the closing delimiter whole
def test_a_body_cut_off_ends_with_one_incomplete_part(cut):
    sent = body([b"a" * 100, b"b" * 100])
    complete = read_all(sent[: len(sent) - cut], 5)
    assert complete[-1] is None
    assert all(found is not None for found in complete[:-1])


@pytest.mark.parametrize("sent", [b"no boundary here", b"--" + BOUNDARY.encode() + b"--\r\n",
                                  b"--" + BOUNDARY.encode() + b"junk\r\n\r\n"])
def test_bodies_without_a_part_are_refused(sent):
    with pytest.raises(MultipartError):
        read_all(sent, 4)


def test_the_limit_counts_every_byte_read():
    with pytest.raises(BodyTooLarge):
        read_all(body([b"z" * 5000]), 1000, max_bytes=4000)
