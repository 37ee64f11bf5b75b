"""Reading received files: the DICOM JSON reused across a request's files is what pydicom itself gives."""

import io
from pathlib import Path

import pydicom.data
import pytest

from medai.archive.dicomfile import UnreadableDicom, read_received
from medai.archive.synthetic import Patient, make_series, to_bytes


def _readable(paths) -> list[bytes]:
    files = []
    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        try:
            read_received(io.BytesIO(data), len(data))
        except UnreadableDicom:
            continue
        files.append(data)
    return files


@pytest.fixture(scope="module")
def files() -> list[bytes]:
    """pydicom's test files (transfer syntaxes, character sets, sequences, private tags) and series of ours."""
    series = [to_bytes(ds) for modality in ("CT", "MG") for ds in make_series(modality=modality, count=3)]
    cyrillic = [to_bytes(ds) for ds in make_series(count=2, patient=Patient(name="Иванов^Иван"))]
    bundled = Path(pydicom.data.__file__).parent  # the files in the wheel; fetching the others needs a network
    return _readable(sorted(bundled.glob("test_files/*.dcm")) + sorted(bundled.glob("charset_files/*.dcm"))) + (
        series + cyrillic)


def test_metadata_reusing_elements_equals_a_fresh_conversion(files):
    assert len(files) > 50
    cache: dict = {}
    for _ in range(2):  # the second round takes every cacheable element from the cache
        for data in files:
            reused = read_received(io.BytesIO(data), len(data), json_cache=cache)
            try:
                fresh = read_received(io.BytesIO(data), len(data)).metadata
            except ValueError as exc:  # a value pydicom cannot put in JSON fails the same way
                with pytest.raises(type(exc)):
                    reused.metadata  # noqa: B018
                continue
            assert reused.metadata == fresh
    assert cache
