"""Reading and vetting one received DICOM Part 10 file before it is stored.

The header is parsed (stop before pixel data, so a 50 MB mammogram costs no 50 MB of memory) and the
pixel data's framing is checked against the file size, because pydicom silently accepts a file whose
pixel data was cut off in transit.
"""

import hashlib
import struct
import tempfile
from dataclasses import dataclass, field
from typing import BinaryIO

from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from medai.dicomweb.dicomjson import BULK_DATA_THRESHOLD, bulk_uri, dataset_metadata, pixel_data_entry

_LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)
_ITEM = (0xFFFE, 0xE000)
_UNDEFINED = 0xFFFFFFFF
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class UnreadableDicom(ValueError):
    """Not a complete, identifiable DICOM Part 10 file (STOW failure 0xC000)."""


@dataclass(frozen=True)
class ReceivedFile:
    dataset: Dataset
    has_pixel_data: bool
    json_cache: dict | None = field(default=None, repr=False, compare=False)

    @property
    def metadata(self) -> dict:
        """The data set as DICOM JSON (dicomjson.dataset_metadata). Elements may be shared with other
        files read with the same `json_cache`: read it, do not change it."""
        if self.json_cache is None or not self.dataset.original_character_set:
            return dataset_metadata(self.dataset, has_pixel_data=self.has_pixel_data)
        return _metadata_reusing(self.dataset, self.has_pixel_data, self.json_cache)


def read_received(fileobj: BinaryIO, size: int, *, json_cache: dict | None = None) -> ReceivedFile:
    """Parse and vet a received file; raises UnreadableDicom with a reason a sender can act on.

    `json_cache`, a dict kept for the files of one request, lets `metadata` reuse the DICOM JSON of
    elements that earlier files encoded with the same bytes (most of a series' header)."""
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
    if dataset.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian:
        has_pixel_data = _deflated_has_pixel_data(fileobj)
    else:
        pixel_data_at = fileobj.tell()
        has_pixel_data = pixel_data_at < size
        if has_pixel_data:
            _check_pixel_data_framing(fileobj, pixel_data_at, size, dataset.file_meta.TransferSyntaxUID)
    if not has_pixel_data and "Rows" in dataset:
        raise UnreadableDicom("image attributes are present but the pixel data is missing (truncated file?)")
    return ReceivedFile(dataset, has_pixel_data, json_cache)


JSON_CACHE_LIMIT = 10_000  # elements; the cache starts over past it
JSON_CACHE_VALUE_BYTES = 256  # longer values are converted each time: keys hold the bytes, a few MB in all


def _metadata_reusing(dataset: Dataset, has_pixel_data: bool, cache: dict) -> dict:
    """dataset_metadata, element by element, with the JSON of every element taken from `cache` when an
    earlier file had the same encoded element. Converting values is most of the cost of a header, and
    in a series all but a few elements (UIDs, position, number) repeat.

    Only explicit-VR elements read raw are reused: their JSON depends on nothing but the tag, VR, bytes,
    byte order and character set, which make the key. Anything else (sequences, UN, implicit VR, whose
    conversion can look at other elements) is converted as dataset.to_json_dict does it.
    """
    charset = dataset.original_character_set
    charset = tuple(charset) if isinstance(charset, list | tuple) else charset
    if len(cache) > JSON_CACHE_LIMIT:
        cache.clear()
    metadata = {}
    for tag in dataset.keys():  # noqa: SIM118 - iterating a Dataset would convert every element
        raw = dataset.get_item(tag, keep_deferred=True)
        key = None
        if (
            isinstance(raw, RawDataElement)
            and raw.VR not in (None, "SQ", "UN")
            and not raw.is_implicit_VR
            and raw.value is not None
            and len(raw.value) <= JSON_CACHE_VALUE_BYTES
            and raw.length != _UNDEFINED
        ):
            key = (raw.tag, raw.VR, raw.is_little_endian, raw.value, charset)
            element = cache.get(key)
            if element is not None:
                metadata[f"{tag:08X}"] = element
                continue
        element = dataset[tag].to_json_dict(bulk_data_element_handler=bulk_uri,
                                            bulk_data_threshold=BULK_DATA_THRESHOLD)
        if key is not None:
            cache[key] = element
        metadata[f"{tag:08X}"] = element
    if has_pixel_data:
        metadata["7FE00010"] = pixel_data_entry(dataset)
    return metadata


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


def _deflated_has_pixel_data(fileobj: BinaryIO) -> bool:
    """A deflated data set is one compressed stream, so the file's position after the header says
    nothing about the pixel data: inflate it all (zlib fails on a cut stream) and look."""
    fileobj.seek(0)
    try:
        dataset = read_stored(fileobj)
    except Exception as exc:
        raise UnreadableDicom(f"the deflated data set cannot be inflated: {type(exc).__name__}") from exc
    return any(keyword in dataset for keyword in PIXEL_DATA_KEYWORDS)


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
