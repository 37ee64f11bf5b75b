"""Reading pixel data and bulk data out of a stored instance, for WADO-RS frames, bulkdata and rendered.

A stored object is opened as a seekable file that pulls from object storage only as far as reads
reach (spooled in memory up to DICOMWEB_SPOOL_MEMORY_BYTES, then to a temporary file): frame 1 of
a 2 GB multi-frame object costs its header and one frame, not 2 GB. Frames are located from the
file's own framing: by arithmetic for native pixel data, through the Basic or Extended Offset
Table (or the fragments) for encapsulated pixel data, as pydicom does it.
"""

import io
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from django.conf import settings
from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.encaps import get_frame
from pydicom.pixels import pack_bits, pixel_array
from pydicom.tag import Tag
from pydicom.uid import UID

from medai.archive.dicomfile import read_stored
from medai.archive.storage import CHUNK_SIZE, ObjectStorage, StorageUnavailable

PIXEL_DATA = 0x7FE00010
READ_BUFFER = 64 * 1024


class LazyStoredFile(io.RawIOBase):
    """A read-only, seekable view of a stored object that fetches its chunks on demand."""

    def __init__(self, chunks: Iterator[bytes], size: int, name: str) -> None:
        self.name = name  # pydicom records where a data set came from
        self._chunks = chunks
        self._size = size
        self._fetched = 0
        self._position = 0
        self._spool = tempfile.SpooledTemporaryFile(max_size=settings.DICOMWEB_SPOOL_MEMORY_BYTES)  # noqa: SIM115

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        end = min(self._position + len(buffer), self._size)
        if end <= self._position:
            return 0
        self._fetch_to(end)
        self._spool.seek(self._position)
        data = self._spool.read(end - self._position)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def _fetch_to(self, end: int) -> None:
        self._spool.seek(0, io.SEEK_END)
        while self._fetched < end:
            chunk = next(self._chunks, None)
            if chunk is None:
                raise StorageUnavailable(f"stored object ended after {self._fetched} of {self._size} bytes")
            self._spool.write(chunk)
            self._fetched += len(chunk)

    def close(self) -> None:
        if not self.closed:
            self._spool.close()
            close_chunks = getattr(self._chunks, "close", None)
            if close_chunks is not None:
                close_chunks()  # releases an S3 connection mid-object
        super().close()


def open_stored(storage: ObjectStorage, *, key: str, size: int) -> BinaryIO:
    """The stored object as a buffered binary file (close it, or use it in `with`); reads raise
    StorageUnavailable if the store cannot be read."""
    return io.BufferedReader(LazyStoredFile(storage.iter_chunks(key), size, key), buffer_size=READ_BUFFER)


@dataclass(frozen=True)
class PixelDataElement:
    """Where a stored file's Pixel Data value lies, and the header (every element before it)."""

    header: Dataset
    transfer_syntax: UID
    offset: int | None  # the value's first byte (the Basic Offset Table's item tag when encapsulated);
    # None for deflated files, whose byte positions mean nothing: they can only be decoded whole
    length: int | None  # None: undefined length (encapsulated)

    @property
    def number_of_frames(self) -> int:
        try:
            return max(int(self.header.get("NumberOfFrames") or 1), 1)
        except ValueError:
            return 1


def read_header(stored: BinaryIO) -> Dataset:
    """Every element before the pixel data."""
    stored.seek(0)
    return read_stored(stored, stop_before_pixels=True)


def locate_pixel_data(stored: BinaryIO) -> PixelDataElement | None:
    """Read the header and the Pixel Data element's own header; None if there is no (7FE0,0010)."""
    header = read_header(stored)
    syntax = UID(header.file_meta.TransferSyntaxUID)
    if syntax.is_deflated:
        return PixelDataElement(header, syntax, None, None) if "Rows" in header else None
    endian = "<" if syntax.is_little_endian else ">"
    tag_bytes = stored.read(4)
    if len(tag_bytes) < 4 or Tag(*struct.unpack(f"{endian}HH", tag_bytes)) != PIXEL_DATA:
        return None
    if not syntax.is_implicit_VR:
        stored.read(4)  # VR (OB/OW) and two reserved bytes: pixel data always has a 32-bit length
    (length,) = struct.unpack(f"{endian}L", stored.read(4))
    return PixelDataElement(header, syntax, stored.tell(), None if length == 0xFFFFFFFF else length)


def _native_frame_span(element: PixelDataElement) -> int | None:
    """Bytes per native frame, or None when frames do not start on byte boundaries (1-bit data)."""
    header = element.header
    samples = int(header.get("SamplesPerPixel") or 1)
    if str(header.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
        samples = 2  # two values per pixel after horizontal subsampling
    bits = int(header.Rows) * int(header.Columns) * samples * int(header.BitsAllocated)
    return bits // 8 if bits % 8 == 0 else None


def native_frame(stored: BinaryIO, element: PixelDataElement, index: int) -> bytes:
    """Frame `index` (from 0) of little-endian native pixel data, exactly as stored."""
    span = _native_frame_span(element)
    if span is None:
        return decoded_frame(stored, element, index)
    stored.seek(element.offset + index * span)
    return stored.read(span)


def bitstream_frame(stored: BinaryIO, element: PixelDataElement, index: int) -> bytes:
    """Frame `index` (from 0) of encapsulated pixel data: its compressed bitstream, fragments joined."""
    header = element.header
    extended = None
    if "ExtendedOffsetTable" in header and "ExtendedOffsetTableLengths" in header:
        extended = (header.ExtendedOffsetTable, header.ExtendedOffsetTableLengths)
    stored.seek(element.offset)
    return get_frame(stored, index, number_of_frames=element.number_of_frames, extended_offsets=extended)


def decoded_frame(stored: BinaryIO, element: PixelDataElement, index: int) -> bytes:
    """Frame `index` decompressed to Explicit VR Little Endian bytes, interleaved by pixel (Planar
    Configuration 0); YCbCr images come out as RGB, as pydicom's decoders convert them."""
    array = decode_frame(stored, element, index)
    if int(element.header.BitsAllocated) == 1:
        return pack_bits(array)
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def decode_frame(stored: BinaryIO, element: PixelDataElement, index: int, ds_out: Dataset | None = None) -> np.ndarray:
    """Frame `index` as an array, through pydicom's decoders (pylibjpeg, openjpeg, pyjpegls, RLE),
    reading only that frame's bytes. Deflated files are inflated whole first, as pydicom must."""
    if element.transfer_syntax.is_deflated:
        stored.seek(0)
        dataset = read_stored(stored)
        if ds_out is not None:
            ds_out.update(dataset.group_dataset(0x0028))
            ds_out.file_meta = dataset.file_meta
        return pixel_array(dataset, index=index)
    stored.seek(0)
    extra_tags = [0x52009229, 0x52009230]  # Shared / Per-frame Functional Groups: enhanced multi-frame LUTs
    return pixel_array(stored, index=index, ds_out=ds_out, specific_tags=extra_tags if ds_out is not None else None)


def iter_value(stored: BinaryIO, element: PixelDataElement) -> Iterator[bytes]:
    """A native Pixel Data value, every frame, in storage-sized chunks."""
    stored.seek(element.offset)
    remaining = element.length or 0
    while remaining > 0:
        chunk = stored.read(min(CHUNK_SIZE, remaining))
        if not chunk:
            raise StorageUnavailable("stored object ended inside its pixel data")
        remaining -= len(chunk)
        yield chunk


class AmbiguousBulkData(LookupError):
    """The tag occurs more than once inside sequences: a BulkDataURI by tag alone cannot say which."""


def bulk_value(header: Dataset, tag: int) -> bytes | None:
    """The raw value of an element before the pixel data, as stored (file byte order).

    Top-level first. Our stored metadata names nested bulk data by its tag alone (`bulkdata/ggggeeee`),
    so a tag found only inside sequences is served when it occurs exactly once there.
    """
    if tag in header:
        return _raw_bytes(header.get_item(tag))
    found = list(_nested(header, tag))
    if len(found) > 1:
        raise AmbiguousBulkData(f"{tag:08X}")
    return found[0] if found else None


def _nested(dataset: Dataset, tag: int) -> Iterator[bytes]:
    for element in dataset:
        if element.VR != "SQ":
            continue
        for item in element.value:
            if tag in item:
                value = _raw_bytes(item.get_item(tag))
                if value is not None:
                    yield value
            yield from _nested(item, tag)


def _raw_bytes(element: DataElement | RawDataElement | None) -> bytes | None:
    if element is None:
        return None
    value = element.value
    return bytes(value) if isinstance(value, bytes | bytearray) else None
