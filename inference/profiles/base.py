"""What every profile shares: refusals, the profile's interface, pixel decoding, Russian number format.

A profile knows one kind of study: which instances a model may see (the audit, on headers only, so a
wrong study is refused before its pixels are fetched), how pixels become the model's tensors, and how
the model's tensors become an Outcome a clinic reads."""

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from inference.outcome import Outcome
from inference.triton import OutputSpec

DECODE_THREADS = 8
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Refusal:
    """Why a study cannot be analysed: a stable code, and a reason a clinic reads, in Russian."""

    code: str
    reason_ru: str


class InputRejected(Exception):
    """The study passed the header audit but its pixels cannot be used."""

    def __init__(self, code: str, reason_ru: str) -> None:
        super().__init__(code)
        self.code, self.reason_ru = code, reason_ru


@dataclass(frozen=True)
class Prepared:
    """The tensors' source images, in the order their SOP Instance UIDs are listed (to map marks back)."""

    sop_instance_uids: list[str]


class Profile(ABC):
    """One kind of study. `rules` given to the methods override `DEFAULT_RULES` key by key."""

    name: str
    model: str
    OUTPUTS: dict[str, OutputSpec]
    DEFAULT_RULES: dict

    def rules(self, rules: dict | None) -> dict:
        return {**self.DEFAULT_RULES, **(rules or {})}

    @abstractmethod
    def audit(self, headers: list[Dataset], rules: dict | None = None) -> list[Refusal]:
        """Reasons to refuse the study, from headers alone; empty when it can be analysed."""

    @abstractmethod
    def select(self, headers: list[Dataset], rules: dict | None = None) -> list[str]:
        """SOP Instance UIDs of the instances to load, of a study that passed the audit."""

    @abstractmethod
    def prepare(self, datasets: list[Dataset], rules: dict | None = None) -> Prepared:
        """The selected instances, with pixel data, made ready for `requests`."""

    @abstractmethod
    def requests(self, prepared: Prepared) -> list[dict[str, np.ndarray]]:
        """The input tensors of each Triton request."""

    @abstractmethod
    def interpret(self, prepared: Prepared, answers: list[dict[str, np.ndarray]], *,
                  pathology_threshold: float) -> Outcome:
        """The Outcome of the answers, one per request, in the order of `requests`."""


def text(ds: Dataset, keyword: str) -> str:
    """A header value as upper-case text, '' when absent."""
    return str(ds.get(keyword, "") or "").strip().upper()


def modality_refusal(headers: list[Dataset], modalities: Iterable[str], expected_ru: str) -> Refusal:
    found = ", ".join(sorted({text(h, "Modality") or "не указана" for h in headers})) or "нет изображений"
    return Refusal("wrong_modality", f"Модальность исследования ({found}) не подходит: ожидается {expected_ru} "
                                     f"({'/'.join(modalities)}).")


def body_part_refusal(headers: list[Dataset], body_parts: Iterable[str], expected_ru: str) -> Refusal:
    found = ", ".join(sorted({text(h, "BodyPartExamined") for h in headers}))
    return Refusal("wrong_body_part", f"Исследование другой анатомической области (BodyPartExamined {found}); "
                                      f"анализ возможен только для {expected_ru} ({'/'.join(body_parts)}).")


def body_part_ok(header: Dataset, body_parts: Iterable[str]) -> bool:
    """An empty BodyPartExamined is accepted: PACS often leave it empty; a different area is not."""
    part = text(header, "BodyPartExamined")
    return not part or part in body_parts


def pixels(ds: Dataset) -> np.ndarray:
    """The stored values of a single-frame grey image, or InputRejected with a reason the clinic can read.
    Uncompressed little-endian pixels are read straight from the bytes (read-only unless unused high bits
    had to be cleared), as pydicom's `pixel_array` would give them; anything else goes through pydicom."""
    native = _native_pixels(ds)
    if native is not None:
        return native
    try:
        array = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for damaged or unsupported pixel data
        raise InputRejected("pixels_undecodable", "Не удалось декодировать пиксельные данные изображения "
                            f"(SOP Instance UID {ds.get('SOPInstanceUID', '')}).") from exc
    if array.ndim != 2:
        raise InputRejected("unsupported_pixels", "Поддерживаются только одноканальные однокадровые изображения.")
    return array


def decode_ahead(ds: Dataset) -> None:
    """Decode compressed pixel data now (pydicom keeps the array for `pixels`), e.g. in a loading thread;
    uncompressed pixels need no decoding and are left to `pixels`. InputRejected when undecodable."""
    if _native_layout(ds) is None:
        pixels(ds)


_NATIVE_SYNTAXES = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}


def _native_layout(ds: Dataset) -> tuple[int, int, int, int, bool] | None:
    """(rows, columns, bits allocated, bits stored, signed) of an uncompressed little-endian single-frame
    grey image whose pixel data has exactly its size; None for anything else (pydicom decides)."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or meta.get("TransferSyntaxUID") not in _NATIVE_SYNTAXES or "PixelData" not in ds:
        return None
    try:
        rows, columns, allocated, stored = int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated), int(ds.BitsStored)
        signed, samples, colour = int(ds.PixelRepresentation), int(ds.SamplesPerPixel), ds.PhotometricInterpretation
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    if (samples != 1 or frames != 1 or allocated not in (8, 16, 32) or not 0 < stored <= allocated
            or signed not in (0, 1) or rows <= 0 or columns <= 0 or colour not in ("MONOCHROME1", "MONOCHROME2")):
        return None
    data, size = ds.PixelData, rows * columns * allocated // 8
    if not isinstance(data, bytes) or len(data) not in (size, size + 1):  # + 1: padding to an even length
        return None
    return rows, columns, allocated, stored, bool(signed)


def _native_pixels(ds: Dataset) -> np.ndarray | None:
    """`pixel_array` of an image `_native_layout` accepts, read straight from its bytes without pydicom's
    decoding machinery (a few ms a slice, and a CT has hundreds); None for any other image."""
    layout = _native_layout(ds)
    if layout is None:
        return None
    rows, columns, allocated, stored, signed = layout
    array = np.frombuffer(ds.PixelData, dtype=f"<{'i' if signed else 'u'}{allocated // 8}", count=rows * columns)
    array = array.reshape(rows, columns)
    if stored < allocated:  # as pydicom: clear (unsigned) or sign-extend (signed) the unused high bits
        array = np.left_shift(array, allocated - stored)
        np.right_shift(array, allocated - stored, out=array)
    return array


def image(ds: Dataset) -> np.ndarray:
    """One grey-level image as float32 in the modality's units (rescale applied), bright = dense."""
    array = apply_modality_lut(pixels(ds), ds).astype(np.float32)
    if text(ds, "PhotometricInterpretation") == "MONOCHROME1":  # low values shown bright
        array = array.max() + array.min() - array
    return array


def downsampled(picture: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """The picture shrunk by the smallest whole factor that brings its longer side to `max_side` or less,
    each pixel the mean of a factor x factor block (area averaging, so noise does not alias into
    findings), and that factor, by which the model's boxes scale back to the stored image. A 3000-pixel
    detector image costs the model nine times what its 1000-pixel reading does, and finds no more."""
    factor = -(-max(picture.shape) // max_side)
    if factor <= 1:
        return picture, 1
    rows, columns = picture.shape[0] // factor * factor, picture.shape[1] // factor * factor
    blocks = picture[:rows, :columns].reshape(rows // factor, factor, columns // factor, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32), factor


def scaled(box: tuple[int, ...], factor: int) -> tuple[int, ...]:
    """A box of a downsampled picture, in the stored image's pixels."""
    return tuple(value * factor for value in box)


def in_threads(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`function` of each item, in threads: numpy and the codecs release the GIL, and a CT has hundreds
    of slices."""
    if len(items) < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(min(DECODE_THREADS, len(items))) as pool:
        return list(pool.map(function, items))


def number_ru(value: float, digits: int = 2) -> str:
    """0.87 as '0,87': the decimal comma of Russian text."""
    return f"{value:.{digits}f}".replace(".", ",")
