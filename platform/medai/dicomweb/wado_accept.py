"""Content negotiation for WADO-RS (PS3.18 8.7): the Accept header, and the media types of pixel data.

WADO-RS never transcodes a stored instance: it returns the file exactly as stored. Frames and the
Pixel Data bulk data can be served three ways: uncompressed bytes as stored, the stored compressed
bitstream (with its own media type, PS3.18 Table 8.7.3-2), or decompressed to Explicit VR Little
Endian when the client accepts nothing else. Which one is chosen follows the client's preferences
(q-values, then order).
"""

from dataclasses import dataclass, field

from django.http import HttpRequest
from pydicom.uid import UID

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
OCTET_STREAM = "application/octet-stream"
DICOM = "application/dicom"
ANY_SYNTAX = "*"

# PS3.18 Table 8.7.3-2: the media type of a compressed frame's bitstream by transfer syntax.
BITSTREAM_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
# Pixel data stored like this is byte-for-byte the Explicit VR Little Endian representation.
NATIVE_LITTLE_ENDIAN = {"1.2.840.10008.1.2", EXPLICIT_VR_LITTLE_ENDIAN}


@dataclass(frozen=True)
class MediaRange:
    """One element of an Accept header: `type/subtype` (lower case) and its parameters, q aside."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def part_type(self) -> str:
        return self.params.get("type", "*/*").lower()

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")


def media_matches(media_range: str, media_type: str) -> bool:
    """`*/*`, `image/*` or the exact type."""
    if media_range in ("*/*", "*"):
        return True
    if media_range.endswith("/*"):
        return media_type.startswith(media_range[:-1])
    return media_range == media_type


def requested_ranges(request: HttpRequest) -> list[MediaRange]:
    """The caller's acceptable media ranges, most preferred first. The `accept` query parameter
    (PS3.18 8.3.3.1) replaces the header; neither means anything is acceptable."""
    value = request.GET.get("accept") or request.META.get("HTTP_ACCEPT") or "*/*"
    return parse_accept(value)


def parse_accept(value: str) -> list[MediaRange]:
    """RFC 9110 12.5.1, tolerant of what DICOMweb clients send (quoted `type="application/dicom"`).
    Ranges with q=0 are dropped; the rest are sorted by q, ties keeping the client's order."""
    ranges = []
    for item in _split_unquoted(value, ","):
        media_type, *raw_params = _split_unquoted(item, ";")
        media_type = media_type.strip().lower()
        if not media_type:
            continue
        params = {}
        for raw in raw_params:
            name, _, param_value = raw.partition("=")
            params[name.strip().lower()] = param_value.strip().strip('"')
        q = _quality(params.pop("q", "1"))
        if q > 0:
            ranges.append(MediaRange(media_type, params, q))
    return sorted(ranges, key=lambda r: -r.q)


def _quality(text: str) -> float:
    try:
        return min(max(float(text), 0.0), 1.0)
    except ValueError:
        return 1.0


def _split_unquoted(text: str, separator: str) -> list[str]:
    pieces, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    pieces.append("".join(current))
    return pieces


def dicom_syntaxes(ranges: list[MediaRange]) -> set[str]:
    """The transfer syntaxes in which the caller accepts `multipart/related; type="application/dicom"`;
    `*` for any, empty for none.

    PS3.18 8.7.3.5.2 says a range without `transfer-syntax` asks for Explicit VR Little Endian. We
    do not transcode, so we read it as "as stored": dicomweb-client's retrieve_study/retrieve_series
    send exactly that by default, and every one of its callers wants the study, not a 406.
    """
    syntaxes = set()
    for media_range in ranges:
        if media_range.media_type in ("*/*", "multipart/*"):
            syntaxes.add(ANY_SYNTAX)
        elif media_range.media_type == "multipart/related" and media_matches(
            media_range.params.get("type", DICOM).lower(), DICOM
        ):
            syntaxes.add(media_range.transfer_syntax or ANY_SYNTAX)
    return syntaxes


@dataclass(frozen=True)
class PixelOffer:
    """One way this server can send a stored instance's frames: as `media_type` in `transfer_syntax`,
    either as stored (`decode` False) or decompressed."""

    media_type: str
    transfer_syntax: str
    decode: bool = False

    @property
    def part_content_type(self) -> str:
        return f"{self.media_type}; transfer-syntax={self.transfer_syntax}"


def pixel_offers(stored_syntax: str) -> list[PixelOffer]:
    """What the frames of an instance stored in `stored_syntax` can be sent as, cheapest first."""
    syntax = UID(stored_syntax)
    if syntax in NATIVE_LITTLE_ENDIAN:
        return [PixelOffer(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN)]
    uncompressed = PixelOffer(OCTET_STREAM, EXPLICIT_VR_LITTLE_ENDIAN, decode=True)
    if syntax in BITSTREAM_MEDIA_TYPES:
        return [PixelOffer(BITSTREAM_MEDIA_TYPES[syntax], syntax), PixelOffer(OCTET_STREAM, syntax), uncompressed]
    if syntax.is_transfer_syntax and not syntax.is_encapsulated:  # big endian, deflated
        return [uncompressed]
    return []  # video and unknown syntaxes: nothing frame by frame


def choose_pixel_offer(ranges: list[MediaRange], offers: list[PixelOffer]) -> PixelOffer | None:
    """The offer the caller prefers most, or None (406)."""
    for media_range in ranges:
        for offer in offers:
            if _range_accepts(media_range, offer):
                return offer
    return None


def _range_accepts(media_range: MediaRange, offer: PixelOffer) -> bool:
    if media_range.media_type in ("*/*", "multipart/*"):
        return not offer.decode  # the server's choice: as stored
    if media_range.media_type != "multipart/related" or not media_matches(media_range.part_type, offer.media_type):
        return False
    wanted = media_range.transfer_syntax
    if wanted == ANY_SYNTAX:
        return True
    if wanted is None:
        # octet-stream without a syntax means uncompressed (PS3.18 8.7.3.5.2); an image type without one
        # means that type's bitstream as stored (a JPEG Lossless file is still image/jpeg).
        return offer.transfer_syntax == EXPLICIT_VR_LITTLE_ENDIAN if offer.media_type == OCTET_STREAM else True
    return wanted == offer.transfer_syntax


def accepts_octet_stream(ranges: list[MediaRange]) -> bool:
    """Bulk data other than pixel data is `application/octet-stream` only."""
    return any(
        media_range.media_type in ("*/*", "multipart/*")
        or (media_range.media_type == "multipart/related" and media_matches(media_range.part_type, OCTET_STREAM))
        for media_range in ranges
    )


RENDERED_MEDIA_TYPES = ("image/jpeg", "image/png")


def rendered_media_type(ranges: list[MediaRange]) -> str | None:
    """image/jpeg unless the caller prefers image/png; None if it accepts neither (406)."""
    for media_range in ranges:
        for media_type in RENDERED_MEDIA_TYPES:
            if media_matches(media_range.media_type, media_type):
                return media_type
    return None


def accepts_dicom_json(ranges: list[MediaRange]) -> bool:
    """Metadata is DICOM JSON; `application/json` (which dicomweb-client also sends) is the same bytes."""
    return any(
        media_matches(media_range.media_type, "application/dicom+json")
        or media_matches(media_range.media_type, "application/json")
        for media_range in ranges
    )
