"""Issue #2's proof: what a PACS stores over STOW-RS comes back over QIDO-RS and WADO-RS unchanged.

Driven end to end by dicomweb-client (a client nobody here wrote) against the live web tier on both
storage backends, for pydicom's own test files in ten transfer syntaxes and for generated CT, CR, DX and
MG studies. What is asserted, for each case:

- the archive stores exactly the bytes on the wire. dicomweb-client sends a file read from disk as
  it is (so pydicom's files arrive as their files on disk) and a data set built in memory without the
  PS3.10 preamble (group 0002 first); the archive prefixes only the 128-byte preamble and `DICM`;
- WADO-RS returns exactly the stored bytes, for the study, each series and each instance, and every
  data element (pixel data included) and the file meta equal those of the sent data set;
- QIDO-RS finds exactly the sent study, series and instances, and nothing of the clinic's other study;
- the metadata holds every top-level element, as pydicom encodes it or by an absolute BulkDataURI;
- another organization, in the same region or another, finds nothing and gets 404 on every retrieval.
"""

import io
from collections.abc import Callable
from email.message import Message
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian

from inference.phantoms import chest_ct, chest_radiograph, mammography_study
from medai.archive.models import Instance
from medai.archive.synthetic import make_series

PREAMBLE = b"\x00" * 128 + b"DICM"
STUDY, SERIES, SOP = "0020000D", "0020000E", "00080018"

PYDICOM_FILES = {  # pydicom's bundled test files, by transfer syntax
    "CT_small.dcm": "Explicit VR Little Endian (a CT image)",
    "MR_small_implicit.dcm": "Implicit VR Little Endian",
    "MR_small_bigendian.dcm": "Explicit VR Big Endian (retired, still sent by old modalities)",
    "image_dfl.dcm": "Deflated Explicit VR Little Endian",
    "SC_rgb_jpeg_dcmtk.dcm": "JPEG Baseline",
    "JPGExtended.dcm": "JPEG Extended, 12 bit",
    "SC_rgb_jpeg_gdcm.dcm": "JPEG Lossless SV1",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS Lossless",
    "JPEG2000.dcm": "JPEG 2000",
    "SC_rgb_rle_2frame.dcm": "RLE Lossless, two frames",
}
GENERATED: dict[str, Callable[[], list[Dataset]]] = {
    "CT": lambda: chest_ct(slices=6, size=64)[0],
    "CR": lambda: [chest_radiograph(modality="CR", size=128)[0]],
    "DX": lambda: make_series(modality="DX", count=2, view_position="PA"),
    "MG": lambda: mammography_study(size=128)[0],  # CC and MLO of each breast: two series
}


def client_for(base_url: str, token: str, exchanged: list[requests.Response] | None = None) -> DICOMwebClient:
    """dicomweb-client with the bearer token; its exchanges (requests and whole answers) go to `exchanged`."""
    session = requests.Session()
    if exchanged is not None:
        session.hooks["response"].append(lambda response, *args, **kwargs: exchanged.append(response))
    return DICOMwebClient(url=base_url + "/dicomweb", session=session, headers={"Authorization": f"Bearer {token}"})


def encoded(ds: Dataset) -> bytes:
    """The part dicomweb-client's store_instances sends for a data set (pydicom.dcmwrite, as it is)."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


def part_bytes(response: requests.Response) -> dict[str, bytes]:
    """The bytes of each part of a multipart/related answer, by SOP Instance UID, split on its boundary here:
    not read back through pydicom, which keeps a deflated data set inflated."""
    header = Message()
    header["Content-Type"] = response.headers["Content-Type"]
    delimiter = b"--" + header.get_param("boundary").encode()
    found = {}
    for piece in response.content.split(delimiter)[1:-1]:  # the last is the closing "--"
        _headers, _, part = piece.partition(b"\r\n\r\n")
        part = part.removesuffix(b"\r\n")  # the CRLF before the next delimiter
        found[str(pydicom.dcmread(io.BytesIO(part), stop_before_pixels=True).SOPInstanceUID)] = part
    return found


def uids(results: list[dict], tag: str) -> list[str]:
    return sorted(result[tag]["Value"][0] for result in results)


def assert_metadata_describes(document: dict, ds: Dataset, instance_path: str) -> None:
    """Every top-level element, as pydicom encodes it or by its absolute BulkDataURI; but Data Set Trailing
    Padding, which has no meaning (PS3.5 7.5) and which the archive, reading up to the pixel data, leaves out."""
    expected = ds.to_json_dict()
    expected.pop("FFFCFFFC", None)
    if "7FE00010" in expected and ds.file_meta.TransferSyntaxUID.is_encapsulated:
        expected["7FE00010"]["vr"] = "OB"  # PS3.5 A.4, though a file may say OW (MR_small_jpeg_ls_lossless.dcm does)
    assert document.keys() == expected.keys()
    for tag, element in document.items():
        if "BulkDataURI" in element:
            assert element["vr"] == expected[tag]["vr"], tag
            assert element["BulkDataURI"].endswith(f"{instance_path}/bulkdata/{tag}"), tag
        else:
            assert element == expected[tag], tag


def pydicom_file(name: str) -> tuple[list[Dataset], bytes | None]:
    """The file as read, and its bytes, which dicomweb-client sends unchanged (but a deflated one, deflated anew)."""
    path = Path(get_testdata_file(name))
    ds = pydicom.dcmread(path)
    return [ds], None if ds.file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian else path.read_bytes()


CASES = [pytest.param(lambda name=name: pydicom_file(name), id=name)
         for name in PYDICOM_FILES] + [
    pytest.param(lambda make=make: (make(), None), id=f"generated-{modality}") for modality, make in GENERATED.items()
]


@pytest.mark.parametrize("case", CASES)
def test_stow_qido_wado_round_trip(live_platform, tenant_factory, use_storage, case) -> None:
    organization, token = tenant_factory()
    sent, on_disk = case()
    exchanged: list[requests.Response] = []
    client = client_for(live_platform, token, exchanged)
    other = make_series(count=1)  # the clinic's other study: no search or retrieval of this one may return it
    client.store_instances(other)
    response = client.store_instances(sent)
    assert "FailedSOPSequence" not in response
    assert len(response.ReferencedSOPSequence) == len(sent)

    study = str(sent[0].StudyInstanceUID)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sent}
    series: dict[str, list[str]] = {}
    for uid, ds in sorted(by_uid.items()):
        series.setdefault(str(ds.SeriesInstanceUID), []).append(uid)
    wire = {uid: encoded(ds) for uid, ds in by_uid.items()}
    assert all(data in exchanged[-1].request.body for data in wire.values())  # we compare with what went out
    if on_disk is not None:
        assert list(wire.values()) == [on_disk]
    rows = Instance.objects.filter(organization=organization, study__study_instance_uid=study)
    stored = {row.sop_instance_uid: use_storage.read(row.storage_key) for row in rows}
    assert stored == {uid: data if data[128:132] == b"DICM" else PREAMBLE + data for uid, data in wire.items()}

    assert uids(client.search_for_studies(), STUDY) == sorted([study, str(other[0].StudyInstanceUID)])
    assert uids(client.search_for_studies(search_filters={"StudyInstanceUID": study}), STUDY) == [study]
    assert uids(client.search_for_series(study), SERIES) == sorted(series)
    assert uids(client.search_for_instances(study), SOP) == sorted(by_uid)
    for series_uid, sops in series.items():
        assert uids(client.search_for_instances(study, series_uid), SOP) == sops

    study_parts = client.retrieve_study(study)
    assert part_bytes(exchanged[-1]) == stored
    for series_uid, sops in series.items():
        client.retrieve_series(study, series_uid)
        assert part_bytes(exchanged[-1]) == {uid: stored[uid] for uid in sops}
        for uid in sops:
            client.retrieve_instance(study, series_uid, uid)
            assert part_bytes(exchanged[-1]) == {uid: stored[uid]}
    for ds in study_parts:
        original = by_uid[str(ds.SOPInstanceUID)]
        assert (ds.file_meta, ds) == (original.file_meta, original)
        assert ds.PixelData == original.PixelData

    metadata = {document[SOP]["Value"][0]: document for document in client.retrieve_study_metadata(study)}
    assert metadata.keys() == by_uid.keys()
    for ds in study_parts:
        path = f"/dicomweb/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        assert_metadata_describes(metadata[str(ds.SOPInstanceUID)], ds, path)

    series_uid, sops = next(iter(series.items()))
    for stranger_region in ("RU-MOW", "RU-SPE"):
        stranger = client_for(live_platform, tenant_factory(region_code=stranger_region)[1])
        assert stranger.search_for_studies() == []
        assert stranger.search_for_series(study) == stranger.search_for_instances(study) == []
        for retrieve, args in [(stranger.retrieve_study, [study]), (stranger.retrieve_series, [study, series_uid]),
                               (stranger.retrieve_instance, [study, series_uid, sops[0]]),
                               (stranger.retrieve_study_metadata, [study])]:
            with pytest.raises(requests.HTTPError) as refused:
                retrieve(*args)
            assert refused.value.response.status_code == 404
