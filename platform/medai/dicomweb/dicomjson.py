"""The DICOM JSON model (PS3.18 F.2): attributes as `{"ggggeeee": {"vr": ..., "Value": [...]}}`."""

from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.tag import Tag

MEDIA_TYPE = "application/dicom+json"

# Relative BulkDataURIs are stored in the index and made absolute when served.
BULKDATA_PLACEHOLDER = "bulkdata/"


def tag_hex(keyword_or_tag: str | int) -> str:
    """`PatientName`, `00100010` or 0x00100010 -> `00100010`; raises KeyError for unknown keywords."""
    if isinstance(keyword_or_tag, int):
        return f"{keyword_or_tag:08X}"
    text = keyword_or_tag.strip()
    if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
        return text.upper()
    tag = tag_for_keyword(text)
    if tag is None:
        raise KeyError(text)
    return f"{tag:08X}"


def keyword_of(tag: str) -> str:
    return keyword_for_tag(Tag(int(tag, 16))) or tag


def attribute(keyword: str, value: Any) -> dict[str, Any]:
    """One attribute in DICOM JSON; empty values keep the attribute with no `Value`."""
    tag = tag_for_keyword(keyword)
    vr = dictionary_VR(tag)
    element: dict[str, Any] = {"vr": vr}
    values = value if isinstance(value, list | tuple) else [value]
    values = [v for v in values if v not in (None, "")]
    if values:
        if vr == "PN":
            element["Value"] = [{"Alphabetic": str(v)} for v in values]
        elif vr in ("IS", "SL", "SS", "UL", "US"):
            element["Value"] = [int(v) for v in values]
        else:
            element["Value"] = [str(v) for v in values]
    return {f"{tag:08X}": element}


BULK_DATA_THRESHOLD = 1024  # bytes; longer binary values are stored as BulkDataURIs


def bulk_uri(element) -> str:
    """The relative BulkDataURI a bulk value is stored under."""
    return f"{BULKDATA_PLACEHOLDER}{element.tag:08X}"


def pixel_data_entry(dataset: Dataset) -> dict[str, str]:
    """The DICOM JSON of the pixel data (read with stop_before_pixels): its VR and BulkDataURI."""
    compressed = dataset.file_meta.TransferSyntaxUID.is_compressed
    vr = "OW" if dataset.get("BitsAllocated", 8) > 8 and not compressed else "OB"
    return {"vr": vr, "BulkDataURI": f"{BULKDATA_PLACEHOLDER}7FE00010"}


def dataset_metadata(dataset: Dataset, *, has_pixel_data: bool) -> dict[str, Any]:
    """A data set as DICOM JSON with every bulk value replaced by a relative BulkDataURI."""
    metadata = dataset.to_json_dict(bulk_data_threshold=BULK_DATA_THRESHOLD, bulk_data_element_handler=bulk_uri)
    if has_pixel_data:
        metadata["7FE00010"] = pixel_data_entry(dataset)
    return metadata


def absolute_bulkdata(metadata: dict[str, Any], instance_url: str) -> dict[str, Any]:
    """Rewrite the stored relative BulkDataURIs (nested sequences too) against the instance's URL."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            result = {}
            for key, value in node.items():
                if key == "BulkDataURI" and isinstance(value, str) and value.startswith(BULKDATA_PLACEHOLDER):
                    result[key] = f"{instance_url}/{value}"
                else:
                    result[key] = walk(value)
            return result
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(metadata)
