"""The marked images of an AI analysis as a DICOM Secondary Capture series (RGB, 8 bit).

Pure functions: source images and an `Outcome` in, new pydicom Datasets out; the sources are only
read. Each key image is windowed to grey, enlarged so that text stays legible, and framed by two
bands so that no text covers the anatomy: a red band on top with the burned-in warning that this is an
AI result to be checked by a physician, and a dark band below with the legend (label colours), the
probability and category, and the service's name and version. Marks are coloured rectangles drawn just
outside their boxes, so the marked tissue itself stays visible.
"""

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import matplotlib
import numpy as np
from highdicom.sc import SCImage
from highdicom.sr import CodedConcept
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from inference.outcome import Mark, Outcome
from inference.sr import UTF8, ServiceIdentity, copy_patient_and_study, series_description

WARNING_RU = "РЕЗУЛЬТАТ ИИ. ТРЕБУЕТСЯ ПРОВЕРКА ВРАЧОМ"
WARNING_EN = "AI result — to be reviewed by a physician"
MIN_LONG_SIDE = 512  # small images (a 128 px CT slice) are enlarged to at least this
MIN_WIDTH = 512  # the bands' text needs this much room even beside a narrow image
WARNING_BAND = (178, 20, 20)
LEGEND_BAND = (32, 32, 32)
PALETTE = [(255, 48, 48), (0, 200, 255), (255, 210, 0), (0, 230, 118), (255, 64, 255), (255, 140, 0),
           (150, 120, 255), (0, 255, 200)]
FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
SOURCE_IMAGE_PURPOSE = CodedConcept("121322", "DCM", "Source image for image processing operation")


@dataclass(frozen=True)
class Layout:
    """Where the source image lies in the output: enlarged `scale` times, `left` and `top` pixels in."""

    scale: int
    left: int
    top: int
    width: int
    font_px: int

    def position(self, row: float, column: float) -> tuple[int, int]:
        """The output pixel (row, column) at the top-left corner of source pixel (row, column)."""
        return self.top + round(row * self.scale), self.left + round(column * self.scale)


def layout_for(rows: int, columns: int) -> Layout:
    """The placement of a rows x columns source image: an integer enlargement (so that source pixels map
    to whole output blocks), centred under a warning band sized to the output's width."""
    scale = max(1, math.ceil(MIN_LONG_SIDE / max(rows, columns)))
    width = max(columns * scale, MIN_WIDTH)
    font_px = max(12, width // 32)
    top = 2 * _pad(font_px) + _line(font_px) + _line(_small(font_px))
    return Layout(scale=scale, left=(width - columns * scale) // 2, top=top, width=width, font_px=font_px)


def build_marked_images(
    *, sources: list[Dataset], outcome: Outcome, service: ServiceIdentity, series_instance_uid: str,
    sop_instance_uids: list[str] | None, series_number: int,
) -> list[Dataset]:
    """One Secondary Capture per key image (the outcome's, else the marked images, else the first source,
    so that a normal result still shows the legend and warning), in a new series of the source study.
    UIDs come from `sop_instance_uids` in order; any missing ones are derived from the series UID and the
    source image, so a rerun writes the same UIDs."""
    keys = key_images(sources, outcome)
    given = list(sop_instance_uids or [])
    colours = label_colours(outcome.marks)
    images = []
    for number, source in enumerate(keys, start=1):
        uid = given[number - 1] if number <= len(given) else generate_uid(
            entropy_srcs=[series_instance_uid, str(source.SOPInstanceUID)])
        frame = _frame(source, outcome.marks)
        pixels = render(source, frame, outcome, service, colours)
        images.append(_secondary_capture(source, frame, pixels, service, series_instance_uid, uid, series_number,
                                         number))
    return images


def key_images(sources: list[Dataset], outcome: Outcome) -> list[Dataset]:
    """The source images the SC series shows, in the outcome's order or else in the sources' order."""
    if not sources:
        raise ValueError("marked images need at least one source image")
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    marked = {mark.sop_instance_uid for mark in outcome.marks}
    uids = list(outcome.key_images) or [uid for uid in by_uid if uid in marked] or [next(iter(by_uid))]
    missing = [uid for uid in uids if uid not in by_uid]
    if missing:
        raise ValueError(f"key images not among the sources: {missing}")
    return [by_uid[uid] for uid in uids]


def label_colours(marks: list[Mark]) -> dict[str, tuple[int, int, int]]:
    """One palette colour per distinct label, in order of first appearance, the same on every image."""
    labels = list(dict.fromkeys(mark.label for mark in marks))
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def render(source: Dataset, frame: int, outcome: Outcome, service: ServiceIdentity,
           colours: dict[str, tuple[int, int, int]]) -> np.ndarray:
    """The RGB picture of one frame: the enlarged grey image, its marks, the warning and legend bands."""
    grey = grey_image(source, frame)
    layout = layout_for(*grey.shape)
    marks = [m for m in outcome.marks if m.sop_instance_uid == str(source.SOPInstanceUID) and m.frame == frame]
    swatches = _swatches(layout, list(dict.fromkeys(m.label for m in marks)))
    legend = _legend_lines(source, outcome, service)
    height = layout.top + grey.shape[0] * layout.scale + _legend_height(layout, swatches, legend)
    canvas = Image.new("RGB", (layout.width, height), LEGEND_BAND)
    enlarged = Image.fromarray(grey).resize((grey.shape[1] * layout.scale, grey.shape[0] * layout.scale),
                                            Image.Resampling.BILINEAR)
    canvas.paste(enlarged.convert("RGB"), (layout.left, layout.top))
    draw = ImageDraw.Draw(canvas)
    _draw_warning(draw, layout)
    image_box = (layout.left, layout.top, layout.left + enlarged.width - 1, layout.top + enlarged.height - 1)
    for mark in marks:
        _draw_mark(draw, layout, mark, colours[mark.label], image_box)
    _draw_legend(draw, layout, swatches, legend, colours, top=image_box[3] + 1)
    return np.asarray(canvas, dtype=np.uint8)


def grey_image(source: Dataset, frame: int = 1) -> np.ndarray:
    """One frame as 8-bit grey as a viewer would show it: modality LUT (rescale), the source's window
    (or the 1st-99th percentiles without one), MONOCHROME1 inverted. The source is only read."""
    pixels = source.pixel_array
    if int(source.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[frame - 1]
    if pixels.ndim == 3:  # a colour source: its luminance
        pixels = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    values = np.asarray(apply_modality_lut(pixels, source), dtype=np.float64)
    low, high = _window(source, values)
    scaled = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0)
    if source.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 1.0 - scaled
    return np.round(scaled * 255).astype(np.uint8)


def _window(source: Dataset, values: np.ndarray) -> tuple[float, float]:
    center, width = _first(source.get("WindowCenter")), _first(source.get("WindowWidth"))
    if center is not None and width is not None and width > 1:
        return center - width / 2, center + width / 2
    low, high = np.percentile(values, [1, 99])
    return float(low), float(high) if high > low else float(low) + 1


def _first(value: object) -> float | None:
    """A window attribute's first value (it may be multi-valued), or None when absent."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    return None if value in (None, "") else float(value)


def _frame(source: Dataset, marks: list[Mark]) -> int:
    """The frame shown: that of the first mark on the image, else the first."""
    return next((m.frame for m in marks if m.sop_instance_uid == str(source.SOPInstanceUID)), 1)


@cache
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans from matplotlib's data: a TrueType font with Cyrillic, present wherever matplotlib is."""
    return ImageFont.truetype(str(FONTS / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")), size)


def _pad(font_px: int) -> int:
    return max(4, font_px // 3)


def _line(font_px: int) -> int:
    return math.ceil(font_px * 1.3)


def _small(font_px: int) -> int:
    return max(10, round(font_px * 0.75))


def _fitted(draw: ImageDraw.ImageDraw, text: str, size: int, room: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """The largest font up to `size` in which `text` fits into `room` pixels."""
    while size > 8 and draw.textlength(text, font=_font(size, bold)) > room:
        size -= 1
    return _font(size, bold)


def _draw_warning(draw: ImageDraw.ImageDraw, layout: Layout) -> None:
    """The burned-in warning, Russian then English, white on red across the top band."""
    draw.rectangle((0, 0, layout.width - 1, layout.top - 1), fill=WARNING_BAND)
    pad, room = _pad(layout.font_px), layout.width - 2 * _pad(layout.font_px)
    draw.text((pad, pad), WARNING_RU, fill="white", font=_fitted(draw, WARNING_RU, layout.font_px, room, bold=True))
    draw.text((pad, pad + _line(layout.font_px)), WARNING_EN, fill="white",
              font=_fitted(draw, WARNING_EN, _small(layout.font_px), room))


def _draw_mark(draw: ImageDraw.ImageDraw, layout: Layout, mark: Mark, colour: tuple[int, int, int],
               image_box: tuple[int, int, int, int]) -> None:
    """A rectangle just outside the mark's box (clipped to the image), its label on black above it (or
    below it when there is no room above)."""
    thickness = max(2, layout.scale)
    top, left = layout.position(mark.box[0], mark.box[1])
    bottom, right = layout.position(mark.box[2], mark.box[3])
    outline = (max(left - thickness, image_box[0]), max(top - thickness, image_box[1]),
               min(right - 1 + thickness, image_box[2]), min(bottom - 1 + thickness, image_box[3]))
    draw.rectangle(outline, outline=colour, width=thickness)
    font = _font(_small(layout.font_px))
    text_width, text_height = math.ceil(draw.textlength(mark.label, font=font)), _line(_small(layout.font_px))
    y = outline[1] - text_height - 1 if outline[1] - text_height - 1 >= image_box[1] else outline[3] + 2
    x = min(max(outline[0], 0), layout.width - text_width - 2)
    draw.rectangle((x, y, x + text_width + 2, y + text_height - 1), fill=(0, 0, 0))
    draw.text((x + 1, y), mark.label, fill=colour, font=font)


def _legend_lines(source: Dataset, outcome: Outcome, service: ServiceIdentity) -> list[str]:
    """The legend's text below the swatches: the result, the measurements, the service (and the view)."""
    finding = "признаки патологии" if outcome.pathology else "патологии не выявлено"
    summary = f"ИИ: {finding} · вероятность {outcome.probability:.2f}"
    if outcome.category:
        summary += f" · категория {outcome.category}"
    view = " ".join(str(source.get(k, "")) for k in ("ImageLaterality", "ViewPosition")).strip()
    service_line = f"Сервис ИИ: {service.name} {service.version} · {service.vendor}" + (f" · {view}" if view else "")
    return [summary, *[f"{m.concept_ru}: {m.value:.4g} {m.unit}" for m in outcome.measurements], service_line]


def _swatches(layout: Layout, labels: list[str]) -> list[tuple[int, int, str]]:
    """Where each label's swatch goes in the legend band, (x, line index, label), wrapping to new lines."""
    font, line, pad = _font(_small(layout.font_px)), _line(_small(layout.font_px)), _pad(layout.font_px)
    placed, x, row = [], pad, 0
    for label in labels:
        width = line + math.ceil(font.getlength(label)) + 2 * pad
        if x > pad and x + width > layout.width:
            x, row = pad, row + 1
        placed.append((x, row, label))
        x += width
    return placed


def _legend_height(layout: Layout, swatches: list[tuple[int, int, str]], lines: list[str]) -> int:
    swatch_lines = 1 + max((row for _, row, _ in swatches), default=0)
    return 2 * _pad(layout.font_px) + (swatch_lines + len(lines)) * _line(_small(layout.font_px))


def _draw_legend(draw: ImageDraw.ImageDraw, layout: Layout, swatches: list[tuple[int, int, str]], lines: list[str],
                 colours: dict[str, tuple[int, int, int]], top: int) -> None:
    """Colour swatches with their labels, then the summary, measurements and the service, in light grey."""
    size = _small(layout.font_px)
    pad, line, font = _pad(layout.font_px), _line(size), _font(size)
    y = top + pad
    for x, row, label in swatches:
        colour = colours[label]
        draw.rectangle((x, y + row * line + 2, x + line - 6, y + row * line + line - 6), fill=colour)
        draw.text((x + line, y + row * line), label, fill=colour, font=font)
    if not swatches:
        draw.text((pad, y), "Отметок на снимке нет", fill=(220, 220, 220), font=font)
    y += (1 + max((row for _, row, _ in swatches), default=0)) * line
    for text in lines:
        draw.text((pad, y), text, fill=(220, 220, 220), font=_fitted(draw, text, size, layout.width - 2 * pad))
        y += line


def _orientation(source: Dataset) -> tuple[str, str] | None:
    """The source's PatientOrientation, or the dominant directions of its ImageOrientationPatient."""
    orientation = source.get("PatientOrientation")
    if orientation and len(orientation) == 2 and all(len(str(v)) == 1 for v in orientation):
        return str(orientation[0]), str(orientation[1])
    cosines = source.get("ImageOrientationPatient")
    if not cosines or len(cosines) != 6:
        return None
    return _direction([float(v) for v in cosines[:3]]), _direction([float(v) for v in cosines[3:]])


def _direction(vector: list[float]) -> str:
    axis = int(np.argmax(np.abs(vector)))
    return ("L", "P", "H")[axis] if vector[axis] > 0 else ("R", "A", "F")[axis]


def _secondary_capture(source: Dataset, frame: int, pixels: np.ndarray, service: ServiceIdentity,
                       series_instance_uid: str, sop_instance_uid: str, series_number: int,
                       instance_number: int) -> Dataset:
    """The SC instance: a new series of the source's study, derived from and referencing the source."""
    orientation = _orientation(source)
    sc = SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=pixels, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", patient_orientation=orientation or ("L", "F"),
        series_instance_uid=series_instance_uid, series_number=series_number, sop_instance_uid=sop_instance_uid,
        instance_number=instance_number, manufacturer=service.vendor[:64], transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=series_description("AI markings", service), software_versions=service.version[:64],
        manufacturer_model_name=(service.model_name or service.name)[:64], specific_character_set=UTF8,
    )
    if orientation is None:
        sc.PatientOrientation = None  # Type 2: unknown, rather than invented
    copy_patient_and_study(source, sc)
    sc.ConversionType = "WSD"
    sc.BurnedInAnnotation = "YES"
    sc.DerivationDescription = f"AI analysis markings by {service.label}"[:1024]
    sc.SourceImageSequence = [_source_reference(source, frame)]
    return sc


def _source_reference(source: Dataset, frame: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if int(source.get("NumberOfFrames", 1) or 1) > 1:
        item.ReferencedFrameNumber = frame
    item.PurposeOfReferenceCodeSequence = [SOURCE_IMAGE_PURPOSE]
    return item
