"""Rendering one frame as a consumer image for WADO-RS `/rendered` (PS3.18 8.3.5.1, 10.4.1.1.3).

Greyscale goes through the standard pipeline, with pydicom's implementations: stored values ->
modality LUT (rescale slope/intercept or Modality LUT Sequence) -> VOI (the `window` query parameter,
else the file's Window Center/Width or VOI LUT Sequence, else the frame's min/max) -> 8 bits, inverted
for MONOCHROME1. Windowing is done by `apply_windowing` against an 8-bit output range, so the window
function (LINEAR, LINEAR_EXACT, SIGMOID) is exactly PS3.3 C.11.2.1's. Colour images (RGB, and YCbCr,
which the decoders turn into RGB) pass through, reduced to 8 bits; palette colour goes through its LUT.
"""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_windowing

DEFAULT_JPEG_QUALITY = 90
# PS3.18 8.3.5.1.4 names the functions in lower case with a hyphen; pydicom uses PS3.3's terms.
WINDOW_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


class RenderParameterError(ValueError):
    """A rendering query parameter is malformed (400)."""


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"  # a (0028,1056) VOI LUT Function value

    def is_valid(self) -> bool:
        return self.width >= 1 if self.function == "LINEAR" else self.width > 0


@dataclass(frozen=True)
class RenderOptions:
    media_type: str = "image/jpeg"
    window: Window | None = None
    quality: int = DEFAULT_JPEG_QUALITY
    viewport: tuple[int, int] | None = None


def parse_options(params, *, media_type: str) -> RenderOptions:
    """The `window`, `quality` and `viewport` query parameters; RenderParameterError if malformed."""
    return RenderOptions(
        media_type=media_type,
        window=parse_window(params.get("window")),
        quality=_parse_quality(params.get("quality")),
        viewport=_parse_viewport(params.get("viewport")),
    )


def parse_window(value: str | None) -> Window | None:
    """`window=center,width[,function]` (PS3.18 8.3.5.1.4), in modality LUT output units (e.g. HU)."""
    if not value:
        return None
    fields = [field.strip() for field in value.split(",")]
    if len(fields) not in (2, 3):
        raise RenderParameterError("window is center,width[,function]")
    try:
        center, width = float(fields[0]), float(fields[1])
    except ValueError:
        raise RenderParameterError("window center and width must be numbers") from None
    function = WINDOW_FUNCTIONS.get(fields[2].lower() if len(fields) == 3 else "linear")
    if function is None:
        raise RenderParameterError(f"window function must be one of {', '.join(WINDOW_FUNCTIONS)}")
    window = Window(center, width, function)
    if not np.isfinite([center, width]).all() or not window.is_valid():
        raise RenderParameterError("window width must be at least 1 (linear) or above 0")
    return window


def _parse_quality(value: str | None) -> int:
    if not value:
        return DEFAULT_JPEG_QUALITY
    try:
        quality = int(value)
    except ValueError:
        raise RenderParameterError("quality is an integer from 1 to 100") from None
    if not 1 <= quality <= 100:
        raise RenderParameterError("quality is an integer from 1 to 100")
    return quality


def _parse_viewport(value: str | None) -> tuple[int, int] | None:
    """`viewport=vw,vh`: the image is scaled down to fit, keeping its aspect ratio. The source-region
    form (vw,vh,sx,sy,sw,sh) is not offered."""
    if not value:
        return None
    fields = value.split(",")
    try:
        width, height = (int(field) for field in fields)
    except ValueError:
        raise RenderParameterError("viewport is vw,vh (the source-region form is not supported)") from None
    if width < 1 or height < 1:
        raise RenderParameterError("viewport sizes must be positive")
    return width, height


def render(pixels: np.ndarray, header: Dataset, *, frame_index: int, options: RenderOptions) -> bytes:
    """Encode one decoded frame (`header`: its image pixel module) as options.media_type."""
    image = Image.fromarray(display_pixels(pixels, header, frame_index=frame_index, window=options.window))
    if options.viewport is not None:
        image.thumbnail(options.viewport)
    out = io.BytesIO()
    if options.media_type == "image/png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=options.quality)
    return out.getvalue()


def display_pixels(pixels: np.ndarray, header: Dataset, *, frame_index: int, window: Window | None) -> np.ndarray:
    """The frame as 8-bit greyscale (rows, columns) or RGB (rows, columns, 3)."""
    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, header)
        return _to_8_bits(rgb, bits=8 * rgb.dtype.itemsize)
    if pixels.ndim == 3:
        return _to_8_bits(pixels, bits=int(header.get("BitsStored") or 8))
    _adopt_functional_groups(header, frame_index)
    grey = _voi(apply_modality_lut(pixels, header), header, window)
    return 255 - grey if photometric == "MONOCHROME1" else grey


def _voi(values: np.ndarray, header: Dataset, window: Window | None) -> np.ndarray:
    if window is None and header.get("VOILUTSequence"):
        depth = int(header.VOILUTSequence[0].LUTDescriptor[2])
        return _to_8_bits(apply_voi(np.rint(values).astype(np.int64), header), bits=depth)
    window = window or _stored_window(header) or _min_max_window(values)
    output = Dataset()  # an 8-bit unsigned output range makes apply_windowing yield 0..255
    output.PhotometricInterpretation = "MONOCHROME2"
    output.BitsStored, output.PixelRepresentation = 8, 0
    output.WindowCenter, output.WindowWidth, output.VOILUTFunction = window.center, window.width, window.function
    return np.clip(np.rint(apply_windowing(values, output)), 0, 255).astype(np.uint8)


def _stored_window(header: Dataset) -> Window | None:
    """The first window the file suggests, if it is usable."""
    center, width = header.get("WindowCenter"), header.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return None
    function = str(header.get("VOILUTFunction") or "LINEAR").upper()
    window = Window(_first(center), _first(width), function if function in WINDOW_FUNCTIONS.values() else "LINEAR")
    return window if window.is_valid() else None


def _min_max_window(values: np.ndarray) -> Window:
    low, high = float(values.min()), float(values.max())
    return Window((low + high) / 2, max(high - low, 1e-6), "LINEAR_EXACT")


def _first(value) -> float:
    """Window attributes may be multi-valued (several presets); the first is the default."""
    return float(value[0]) if isinstance(value, MultiValue | list | tuple) else float(value)


def _adopt_functional_groups(header: Dataset, frame_index: int) -> None:
    """Enhanced multi-frame objects keep rescale and window per frame (or shared) in functional groups;
    copy the frame's values to the top level where the LUT functions look for them."""
    groups = []
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame_index < len(per_frame):
        groups.append(per_frame[frame_index])
    shared = header.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        for sequence, keywords in (
            ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept")),
            ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth", "VOILUTFunction")),
        ):
            items = group.get(sequence)
            for keyword in keywords if items else ():
                if keyword in items[0] and keyword not in header:
                    setattr(header, keyword, items[0].get(keyword))


def _to_8_bits(values: np.ndarray, *, bits: int) -> np.ndarray:
    if values.dtype == np.uint8 and bits <= 8:
        return values
    shift = max(bits - 8, 0)
    return np.clip(values.astype(np.int64) >> shift, 0, 255).astype(np.uint8)
