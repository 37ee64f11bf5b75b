"""Reading and vetting one received DICOM Part 10 file before it is stored.

The header is parsed (stop before pixel data, so a 50 MB mammogram costs no 50 MB of memory) and the
pixel data's framing is checked against the file size, because pydicom silently accepts a file whose
pixel data was cut off in transit.
"""

import hashlib
import struct
import tempfile
from dataclasses import dataclass
from typing import BinaryIO

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from medai.dicomweb.dicomjson import dataset_metadata

_LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)
_ITEM = (0xFFFE, 0xE000)
_UNDEFINED = 0xFFFFFFFF


class UnreadableDicom(ValueError):
    """Not a complete, identifiable DICOM Part 10 file (STOW failure 0xC000)."""


@dataclass(frozen=True)
class ReceivedFile:
    dataset: Dataset
    has_pixel_data: bool

    @property
    def metadata(self) -> dict:
        return dataset_metadata(self.dataset, has_pixel_data=self.has_pixel_data)


def read_received(fileobj: BinaryIO, size: int) -> ReceivedFile:
    """Parse and vet a received file; raises UnreadableDicom with a reason a sender can act on."""
    try:
        dataset = read_stored(fileobj, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise UnreadableDicom(f"not a DICOM Part 10 file: {exc}") from exc
    except Exception as exc:
        raise UnreadableDicom(f"the DICOM data set cannot be parsed: {type(exc).__name__}") from exc
    if "TransferSyntaxUID" not in dataset.file_meta:
        raise UnreadableDicom("the file meta information has no Transfer Syntax UID")
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        value = dataset.get(keyword)
        if not value or not UID(str(value)).is_valid:
            raise UnreadableDicom(f"{keyword} is missing or not a valid UID")
    pixel_data_at = fileobj.tell()
    has_pixel_data = pixel_data_at < size
    if has_pixel_data:
        _check_pixel_data_framing(fileobj, pixel_data_at, size, dataset.file_meta.TransferSyntaxUID)
    elif "Rows" in dataset:
        raise UnreadableDicom("image attributes are present but the pixel data is missing (truncated file?)")
    return ReceivedFile(dataset, has_pixel_data)


PREAMBLE = b"\x00" * 128 + b"DICM"


def lacks_preamble(fileobj: BinaryIO) -> bool:
    """True for a file that starts straight with its meta group (0002), as in-memory senders write them."""
    fileobj.seek(0)
    head = fileobj.read(2)
    fileobj.seek(0)
    return head == b"\x02\x00"


def with_preamble(fileobj: BinaryIO, *, spool_bytes: int) -> tuple[tempfile.SpooledTemporaryFile, int, str]:
    """A copy with the PS3.10 preamble and `DICM` prefix, so what the archive stores and serves is a
    complete Part 10 file every reader accepts. Returns (file, size, sha256)."""
    out = tempfile.SpooledTemporaryFile(max_size=spool_bytes)  # noqa: SIM115 - returned to the caller
    digest = hashlib.sha256(PREAMBLE)
    out.write(PREAMBLE)
    size = len(PREAMBLE)
    fileobj.seek(0)
    while chunk := fileobj.read(1024 * 1024):
        out.write(chunk)
        digest.update(chunk)
        size += len(chunk)
    out.seek(0)
    return out, size, digest.hexdigest()


def read_stored(fileobj: BinaryIO, *, stop_before_pixels: bool = False) -> Dataset:
    """Read a Part 10 file as received or stored.

    Senders that build data sets in memory (dicomweb-client, for one) omit the 128-byte preamble
    and start straight with the file meta group (0002): accept that, but nothing without meta.
    STOW-RS adds the preamble before storing (`with_preamble`); this reads both forms.
    """
    return dcmread(fileobj, stop_before_pixels=stop_before_pixels, force=lacks_preamble(fileobj))


def _check_pixel_data_framing(fileobj: BinaryIO, offset: int, size: int, transfer_syntax: UID) -> None:
    endian = "<" if transfer_syntax.is_little_endian else ">"
    fileobj.seek(offset)
    _group, _element = struct.unpack(f"{endian}HH", _read_exactly(fileobj, 4))
    if transfer_syntax.is_implicit_VR:
        (length,) = struct.unpack(f"{endian}L", _read_exactly(fileobj, 4))
    else:
        vr = _read_exactly(fileobj, 2)
        if vr in _LONG_LENGTH_VRS:
            _read_exactly(fileobj, 2)
            (length,) = struct.unpack(f"{endian}L", _read_exactly(fileobj, 4))
        else:
            (length,) = struct.unpack(f"{endian}H", _read_exactly(fileobj, 2))
    if length == _UNDEFINED:
        _check_encapsulated(fileobj, size)
    elif fileobj.tell() + length > size:
        raise UnreadableDicom(f"truncated file: pixel data declares {length} bytes, {size - fileobj.tell()} present")


def _check_encapsulated(fileobj: BinaryIO, size: int) -> None:
    """Walk the fragment items (always little endian) up to the sequence delimiter."""
    while True:
        group, element, length = struct.unpack("<HHL", _read_exactly(fileobj, 8))
        if (group, element) == _SEQUENCE_DELIMITER:
            return
        if (group, element) != _ITEM or fileobj.tell() + length > size:
            raise UnreadableDicom("truncated or malformed encapsulated pixel data")
        fileobj.seek(length, 1)


def _read_exactly(fileobj: BinaryIO, n: int) -> bytes:
    data = fileobj.read(n)
    if len(data) != n:
        raise UnreadableDicom("truncated file: it ends inside the pixel data")
    return data
