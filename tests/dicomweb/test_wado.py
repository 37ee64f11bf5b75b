"""WADO-RS: what a viewer retrieves, in which form, and what it must never see.

Data goes in through the archive's real write path (ReceiveBatch), with pydicom's own test files in
a dozen transfer syntaxes plus generated CT/DX. Retrieval goes through the live web tier (gunicorn,
on both storage backends) with dicomweb-client, a client nobody here wrote, and with `requests` and
a multipart parser written here for byte-level checks. Expected values come from pydicom reading the
original files, never from the server's own code.
"""

import copy
import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np
import pytest
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from medai.accounts.models import Role
from medai.accounts.services import api_token_create, user_ensure
from medai.archive.models import Instance, StudyAccess
from medai.archive.services import ReceiveBatch
from medai.archive.synthetic import make_instance, to_bytes
from medai.dicomweb.dicomjson import dataset_metadata

DICOM_ACCEPT = 'multipart/related; type="application/dicom"'
EXPLICIT_LE = "1.2.840.10008.1.2.1"

# pydicom's bundled test files, one per transfer syntax worth serving (no network needed).
MONO_LOSSLESS = ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]  # all MR_small.dcm's pixels
COLOUR = ["SC_rgb_jpeg_gdcm.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle_2frame.dcm"]  # JPEG lossless, baseline, RLE
GREY_LOSSY = ["JPEG2000.dcm", "JPGExtended.dcm"]  # JPEG 2000 (.91), JPEG extended 12-bit (.51)


@dataclass
class Stored:
    """One archived file: its bytes as stored and pydicom's reading of them."""

    raw: bytes
    dataset: Dataset

    @property
    def uids(self) -> tuple[str, str, str]:
        ds = self.dataset
        return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)

    @property
    def syntax(self) -> str:
        return str(self.dataset.file_meta.TransferSyntaxUID)


def test_file(name: str, *, study_uid: str, series_uid: str | None = None, **attributes) -> bytes:
    """A pydicom test file under fresh UIDs (several share theirs), pixel data untouched."""
    ds = dcmread(get_testdata_file(name))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid or generate_uid()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


test_file.__test__ = False  # a helper, not a test


def archive(organization, files: list[bytes]) -> list[Stored]:
    """Store through the archive's write path, as STOW-RS does."""
    stored = []
    with ReceiveBatch(organization=organization) as batch:
        for raw in files:
            ds = dcmread(io.BytesIO(raw), stop_before_pixels=True)
            batch.store(dataset=ds, fileobj=io.BytesIO(raw), size=len(raw), sha256=hashlib.sha256(raw).hexdigest(),
                        metadata=dataset_metadata(ds, has_pixel_data="PixelData" in dcmread(io.BytesIO(raw))))
            stored.append(Stored(raw, dcmread(io.BytesIO(raw))))
    return stored


@dataclass
class Reader:
    base: str
    organization: object
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def client(self) -> DICOMwebClient:
        return DICOMwebClient(url=f"{self.base}/dicomweb", headers=self.auth)

    def url(self, stored: Stored, suffix: str = "") -> str:
        study, series, sop = stored.uids
        return f"{self.base}/dicomweb/studies/{study}/series/{series}/instances/{sop}{suffix}"

    def get(self, url: str, accept: str | None = None, **params) -> requests.Response:
        headers = dict(self.auth, **({"Accept": accept} if accept is not None else {}))
        return requests.get(url, headers=headers, params=params, timeout=60)


@pytest.fixture
def reader(live_platform, tenant_factory) -> Reader:
    organization, token = tenant_factory(role=Role.RADIOLOGIST)
    return Reader(live_platform, organization, token)


def multipart_parts(response: requests.Response) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related body by hand (RFC 2046), independently of the server's writer."""
    boundary = re.search(r'boundary="?([^";]+)"?', response.headers["Content-Type"]).group(1).encode()
    body = response.content
    assert body.startswith(b"--" + boundary + b"\r\n") and body.endswith(b"--" + boundary + b"--\r\n")
    parts = []
    for section in body[len(boundary) + 2 :].split(b"\r\n--" + boundary)[:-1]:
        head, _, content = section.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().strip().split("\r\n"))
        parts.append((headers, content))
    return parts


def png_pixels(content: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(content))
    assert image.format == "PNG"
    return np.asarray(image)


def audited(reader: Reader) -> list[str]:
    return sorted(StudyAccess.objects.filter(organization=reader.organization).values_list("endpoint", flat=True))


# --- Retrieve study / series / instance ----------------------------------------------------------


@pytest.fixture
def mixed_study(reader) -> list[Stored]:
    """One study, three series, five transfer syntaxes."""
    study = generate_uid()
    ct_series = generate_uid()
    files = [to_bytes(make_instance(modality="CT", study_uid=study, series_uid=ct_series, instance_number=i,
                                    rows=32, columns=32)) for i in (1, 2)]
    mr_series = generate_uid()
    files += [test_file(name, study_uid=study, series_uid=mr_series, SeriesNumber=2, InstanceNumber=i)
              for i, name in enumerate(["MR_small_implicit.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"])]
    files.append(test_file("SC_rgb_jpeg_dcmtk.dcm", study_uid=study, SeriesNumber=3))
    return archive(reader.organization, files)


def test_retrieve_returns_the_stored_bytes_at_every_level(reader, mixed_study):
    stored = {s.uids[2]: s for s in mixed_study}
    study_uid = mixed_study[0].uids[0]
    response = reader.get(f"{reader.base}/dicomweb/studies/{study_uid}", accept=DICOM_ACCEPT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith(DICOM_ACCEPT + "; boundary=")
    assert int(response.headers["Content-Length"]) == len(response.content)
    parts = multipart_parts(response)
    assert len(parts) == len(mixed_study)
    by_index = {i.sha256: i for i in Instance.objects.filter(organization=reader.organization)}
    for headers, content in parts:
        instance = by_index[hashlib.sha256(content).hexdigest()]  # byte-identical to a stored file
        assert headers["Content-Type"] == f"application/dicom; transfer-syntax={instance.transfer_syntax_uid}"
        assert int(headers["Content-Length"]) == instance.size_bytes == len(content)
        assert content == stored[instance.sop_instance_uid].raw
    assert [dcmread(io.BytesIO(c)).SeriesNumber for _, c in parts] == [1, 1, 2, 2, 2, 3]  # series, then instance order

    mr = [s for s in mixed_study if s.dataset.Modality == "MR"]
    series = reader.get(f"{reader.base}/dicomweb/studies/{study_uid}/series/{mr[0].uids[1]}", accept="*/*")
    assert [c for _, c in multipart_parts(series)] == [s.raw for s in mr]
    as_stored = f"{DICOM_ACCEPT}; transfer-syntax={mr[1].syntax}"
    for accept in (None, "*/*", f"{DICOM_ACCEPT}; transfer-syntax=*", as_stored):
        one = reader.get(reader.url(mr[1]), accept=accept)
        assert one.status_code == 200, accept
        assert [c for _, c in multipart_parts(one)] == [mr[1].raw]
    assert audited(reader) == ["wado-instance"] * 4 + ["wado-series", "wado-study"]


def test_dicomweb_client_retrieves_with_its_defaults(reader, mixed_study):
    client = reader.client
    study_uid = mixed_study[0].uids[0]
    study = client.retrieve_study(study_uid)  # Accept without transfer-syntax: served as stored
    assert sorted(ds.SOPInstanceUID for ds in study) == sorted(s.uids[2] for s in mixed_study)
    jpeg = mixed_study[-1]
    series = client.retrieve_series(study_uid, jpeg.uids[1])
    assert [ds.SOPInstanceUID for ds in series] == [jpeg.uids[2]]
    instance = client.retrieve_instance(*jpeg.uids)  # transfer-syntax=*
    assert instance.file_meta.TransferSyntaxUID == jpeg.syntax
    assert np.array_equal(instance.pixel_array, jpeg.dataset.pixel_array)
    explicit = client.retrieve_instance(*mixed_study[0].uids, media_types=(("application/dicom", EXPLICIT_LE),))
    assert explicit.PixelData == mixed_study[0].dataset.PixelData


def test_transfer_syntaxes_are_never_transcoded_so_others_are_406(reader, mixed_study):
    jpeg = mixed_study[-1]
    url = reader.url(jpeg)
    for accept in (f"{DICOM_ACCEPT}; transfer-syntax={EXPLICIT_LE}", "application/dicom+json",
                   'multipart/related; type="application/octet-stream"', f"{DICOM_ACCEPT}; q=0"):
        response = reader.get(url, accept=accept)
        assert response.status_code == 406, accept
        assert response.json()["detail"]
    both = f"{DICOM_ACCEPT}; transfer-syntax={EXPLICIT_LE}, {DICOM_ACCEPT}; transfer-syntax={jpeg.syntax}; q=0.5"
    assert reader.get(url, accept=both).status_code == 200
    # PS3.18 8.3.3.1: the `accept` query parameter replaces the header.
    assert requests.get(url, headers=dict(reader.auth, Accept="text/html"), params={"accept": DICOM_ACCEPT},
                        timeout=30).status_code == 200
    study = f"{reader.base}/dicomweb/studies/{jpeg.uids[0]}"
    mixed = reader.get(study, accept=f"{DICOM_ACCEPT}; transfer-syntax={EXPLICIT_LE}")
    assert mixed.status_code == 406 and jpeg.syntax in mixed.json()["detail"]
    assert audited(reader) == ["wado-instance", "wado-instance"]  # refusals are not reads


# --- Metadata -----------------------------------------------------------------------------------


def test_metadata_at_each_level_with_absolute_bulkdata_uris(reader):
    study = generate_uid()
    stored = archive(reader.organization, [test_file("CT_small.dcm", study_uid=study),
                                           test_file("MR_small_RLE.dcm", study_uid=study)])
    client = reader.client
    by_study = client.retrieve_study_metadata(study)
    assert sorted(Dataset.from_json(m).SOPInstanceUID for m in by_study) == sorted(s.uids[2] for s in stored)
    ct = stored[0]
    (by_series,) = client.retrieve_series_metadata(study, ct.uids[1])
    by_instance = client.retrieve_instance_metadata(*ct.uids)  # the first element, unpacked by the client
    assert by_series == by_instance
    read_back = Dataset.from_json(by_instance)
    assert (read_back.PatientName, read_back.Rows, read_back.RescaleIntercept) == (
        ct.dataset.PatientName, ct.dataset.Rows, ct.dataset.RescaleIntercept)

    response = reader.get(reader.url(ct, "/metadata"), accept="application/dicom+json")
    assert response.headers["Content-Type"] == "application/dicom+json"
    (document,) = response.json()
    pixel_uri, private_uri = document["7FE00010"]["BulkDataURI"], document["00431029"]["BulkDataURI"]
    assert pixel_uri == reader.url(ct, "/bulkdata/7FE00010")  # absolute, on the instance's own URL
    (pixels,) = multipart_parts(reader.get(pixel_uri))
    assert pixels == ({"Content-Type": f"application/octet-stream; transfer-syntax={EXPLICIT_LE}",
                       "Content-Length": str(len(ct.dataset.PixelData))}, ct.dataset.PixelData)
    assert client.retrieve_bulkdata(private_uri) == [ct.dataset[0x00431029].value]
    assert reader.get(reader.url(ct, "/metadata"), accept="application/dicom+xml").status_code == 406
    assert audited(reader) == ["wado-bulkdata", "wado-bulkdata"] + ["wado-metadata"] * 4


# --- Frames -------------------------------------------------------------------------------------


def expected_frames(stored: Stored) -> list[bytes]:
    """Frames as pydicom reads them from the original file: compressed bitstreams, or native slices."""
    ds = stored.dataset
    count = int(ds.get("NumberOfFrames") or 1)
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return list(generate_frames(ds.PixelData, number_of_frames=count))
    span = len(ds.PixelData) // count
    return [ds.PixelData[i * span : (i + 1) * span] for i in range(count)]


def test_frames_in_each_transfer_syntax(reader):
    study = generate_uid()
    names = ["CT_small.dcm", "MR_small_implicit.dcm", "rtdose.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
             "MR_small_jp2klossless.dcm", "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm",
             "examples_ybr_color.dcm"]
    media = {"1.2.840.10008.1.2.5": "image/dicom-rle", "1.2.840.10008.1.2.4.80": "image/jls",
             "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
             "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg"}
    client = reader.client
    for stored in archive(reader.organization, [test_file(name, study_uid=study) for name in names]):
        frames = expected_frames(stored)
        wanted = [1, len(frames)] if len(frames) > 1 else [1]
        assert client.retrieve_instance_frames(*stored.uids, frame_numbers=wanted) == [frames[n - 1] for n in wanted]
        parts = multipart_parts(reader.get(reader.url(stored, f"/frames/{','.join(map(str, wanted))}")))
        part_type = media.get(stored.syntax, "application/octet-stream")
        syntax = stored.syntax if stored.syntax in media else EXPLICIT_LE
        assert {h["Content-Type"] for h, _ in parts} == {f"{part_type}; transfer-syntax={syntax}"}
        if stored.syntax in media:  # the stored bitstream as application/octet-stream, when asked that way
            as_octets = reader.get(reader.url(stored, "/frames/1"),
                                   accept='multipart/related; type="application/octet-stream"; transfer-syntax=*')
            assert multipart_parts(as_octets) == [
                ({"Content-Type": f"application/octet-stream; transfer-syntax={stored.syntax}",
                  "Content-Length": str(len(frames[0]))}, frames[0])]


def test_compressed_frames_are_decompressed_for_clients_that_accept_only_uncompressed(reader):
    study = generate_uid()
    names = ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_gdcm.dcm",
             "SC_rgb_rle_2frame.dcm", "MR_small_bigendian.dcm"]
    client = reader.client
    for stored in archive(reader.organization, [test_file(name, study_uid=study) for name in names]):
        pixels = stored.dataset.pixel_array
        first = pixels[0] if int(stored.dataset.get("NumberOfFrames") or 1) > 1 else pixels
        (frame,) = client.retrieve_instance_frames(*stored.uids, frame_numbers=[1],
                                                   media_types=("application/octet-stream",))
        assert frame == first.astype(first.dtype.newbyteorder("<")).tobytes(), stored.syntax


def test_frame_lists_and_their_errors(reader):
    study = generate_uid()
    multi, report, jpeg = archive(reader.organization, [
        test_file("examples_ybr_color.dcm", study_uid=study), test_file("test-SR.dcm", study_uid=study),
        test_file("SC_rgb_jpeg_dcmtk.dcm", study_uid=study)])
    frames = expected_frames(multi)
    parts = multipart_parts(reader.get(reader.url(multi, "/frames/3,1,30")))
    assert [content for _, content in parts] == [frames[2], frames[0], frames[29]]
    assert reader.get(reader.url(multi, "/frames/31")).status_code == 404
    assert reader.get(reader.url(report, "/frames/1")).status_code == 404
    for malformed in ("0", "1,,2", "a", "-1"):
        assert reader.get(reader.url(multi, f"/frames/{malformed}")).status_code == 400, malformed
    assert reader.get(reader.url(jpeg, "/frames/1"), accept='multipart/related; type="image/jp2"').status_code == 406
    jpeg_ok = reader.get(reader.url(jpeg, "/frames/1"), accept='multipart/related; type="image/jpeg"')
    assert multipart_parts(jpeg_ok)[0][1] == expected_frames(jpeg)[0]
    assert audited(reader) == ["wado-frames", "wado-frames"]


def test_compressed_pixel_data_bulkdata_is_one_part_per_frame(reader):
    (stored,) = archive(reader.organization, [test_file("SC_rgb_rle_2frame.dcm", study_uid=generate_uid())])
    assert reader.client.retrieve_bulkdata(reader.url(stored, "/bulkdata/7FE00010")) == expected_frames(stored)
    assert reader.get(reader.url(stored, "/bulkdata/7FE00011")).status_code == 404
    assert reader.get(reader.url(stored, "/bulkdata/nonsense")).status_code == 404


# --- Rendered -----------------------------------------------------------------------------------


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out independently of the server, to 8 bits."""
    center, width = center - 0.5, width - 1
    out = ((values - center) / width + 0.5) * 255
    out = np.where(values <= center - width / 2, 0, np.where(values > center + width / 2, 255, out))
    return np.rint(out).astype(int)


def test_rendered_applies_rescale_and_window_and_inverts_monochrome1(reader):
    study = generate_uid()
    ct = make_instance(modality="CT", study_uid=study, rows=24, columns=20, seed=7)  # rescale -1024, window -600/1500
    m2 = make_instance(modality="DX", study_uid=study, rows=16, columns=16, seed=3)
    m1 = make_instance(modality="DX", study_uid=study, rows=16, columns=16, seed=3)
    m1.PhotometricInterpretation = "MONOCHROME1"
    ct_stored, m2_stored, m1_stored = archive(reader.organization, [to_bytes(ct), to_bytes(m2), to_bytes(m1)])
    hounsfield = ct.pixel_array.astype(float) - 1024
    client = reader.client

    default = png_pixels(client.retrieve_instance_rendered(*ct_stored.uids, media_types=("image/png",)))
    assert default.shape == (24, 20)
    assert np.abs(default.astype(int) - linear_window(hounsfield, -600, 1500)).max() <= 1  # the file's window
    lung = png_pixels(client.retrieve_instance_rendered(*ct_stored.uids, media_types=("image/png",),
                                                        params={"window": "40,400"}))
    assert np.abs(lung.astype(int) - linear_window(hounsfield, 40, 400)).max() <= 1
    assert not np.array_equal(lung, default)
    sigmoid = png_pixels(reader.get(reader.url(ct_stored, "/rendered"), accept="image/png",
                                    window="40,400,sigmoid").content)
    assert not np.array_equal(sigmoid, lung)

    inverted = png_pixels(reader.get(reader.url(m1_stored, "/rendered"), accept="image/png").content)
    upright = png_pixels(reader.get(reader.url(m2_stored, "/rendered"), accept="image/png").content)
    assert np.array_equal(inverted.astype(int), 255 - upright.astype(int))


def test_rendered_media_types_quality_viewport_and_errors(reader):
    (ct,) = archive(reader.organization, [to_bytes(make_instance(modality="CT", rows=64, columns=48))])
    url = reader.url(ct, "/rendered")
    jpeg = reader.client.retrieve_instance_rendered(*ct.uids)  # no Accept of its own: */*
    assert jpeg[:3] == b"\xff\xd8\xff" and Image.open(io.BytesIO(jpeg)).size == (48, 64)
    assert reader.get(url, accept="image/png, image/jpeg;q=0.5").headers["Content-Type"] == "image/png"
    assert reader.get(url, accept="image/gif, image/*;q=0.1").headers["Content-Type"] == "image/jpeg"
    small = reader.get(url, accept="image/jpeg", quality="5").content
    large = reader.get(url, accept="image/jpeg", quality="100").content
    assert len(small) < len(large)
    assert Image.open(io.BytesIO(reader.get(url, viewport="24,100").content)).size == (24, 32)
    assert reader.get(url, accept="image/gif").status_code == 406
    assert reader.get(url, accept=DICOM_ACCEPT).status_code == 406
    for params in ({"window": "40"}, {"window": "a,b"}, {"window": "40,0"}, {"window": "40,400,cubic"},
                   {"quality": "101"}, {"viewport": "0,10"}):
        response = reader.get(url, **params)
        assert response.status_code == 400 and response.json()["detail"], params
    assert reader.get(reader.url(ct, "/frames/2/rendered")).status_code == 404
    assert reader.get(reader.url(ct, "/frames/1,1/rendered")).status_code == 400


def test_rendered_decodes_every_compressed_transfer_syntax(reader):
    study = generate_uid()
    names = ["MR_small.dcm", *MONO_LOSSLESS, *COLOUR, *GREY_LOSSY, "examples_palette.dcm", "image_dfl.dcm"]
    stored = {name: s for name, s in zip(names, archive(
        reader.organization, [test_file(name, study_uid=study) for name in names]), strict=True)}

    def rendered(name: str, suffix: str = "/rendered") -> np.ndarray:
        response = reader.get(reader.url(stored[name], suffix), accept="image/png")
        assert response.status_code == 200, name
        return png_pixels(response.content)

    reference = rendered("MR_small.dcm")
    for name in MONO_LOSSLESS:  # the same pixels in other syntaxes render identically
        assert np.array_equal(rendered(name), reference), name
    for name in COLOUR:  # colour passes through as RGB (YCbCr converted by the decoder)
        pixels = stored[name].dataset.pixel_array
        assert np.array_equal(rendered(name), pixels[0] if pixels.ndim == 4 else pixels), name
    second = stored["SC_rgb_rle_2frame.dcm"].dataset.pixel_array[1]
    assert np.array_equal(rendered("SC_rgb_rle_2frame.dcm", "/frames/2/rendered"), second)
    for name in [*GREY_LOSSY, "image_dfl.dcm"]:
        image = rendered(name)
        ds = stored[name].dataset
        assert image.shape == (ds.Rows, ds.Columns) and image.min() == 0 and image.max() == 255, name  # min/max
    assert rendered("examples_palette.dcm").shape == (350, 800, 3)


# --- Scope, authentication, audit, storage ------------------------------------------------------


def test_other_tenants_regions_and_anonymous_callers_see_nothing(reader, tenant_factory):
    (ct,) = archive(reader.organization, [test_file("CT_small.dcm", study_uid=generate_uid())])
    study_uid, series_uid, _ = ct.uids
    resources = [f"{reader.base}/dicomweb/studies/{study_uid}", f"{reader.base}/dicomweb/studies/{study_uid}/metadata",
                 f"{reader.base}/dicomweb/studies/{study_uid}/series/{series_uid}",
                 f"{reader.base}/dicomweb/studies/{study_uid}/series/{series_uid}/metadata",
                 reader.url(ct), reader.url(ct, "/metadata"), reader.url(ct, "/rendered"),
                 reader.url(ct, "/frames/1"), reader.url(ct, "/frames/1/rendered"),
                 reader.url(ct, "/bulkdata/7FE00010")]
    _, neighbour = tenant_factory(role=Role.RADIOLOGIST)  # same region, other clinic
    far = user_ensure(username="spb-admin", role=Role.REGIONAL_ADMIN,
                      region=tenant_factory(region_code="RU-SPE")[0].region)
    own_region = user_ensure(username="msk-admin", role=Role.REGIONAL_ADMIN, region=reader.organization.region)
    strangers = (neighbour, api_token_create(user=far))
    for url in resources:
        assert requests.get(url, timeout=30).status_code == 401, url
        for token in strangers:
            response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert response.status_code == 404, url
        assert reader.get(url).status_code == 200, url
    assert requests.get(reader.url(ct, "/metadata"), headers={
        "Authorization": f"Bearer {api_token_create(user=own_region)}"}, timeout=30).status_code == 200
    rows = StudyAccess.objects.filter(study_instance_uid=study_uid)
    assert sorted(rows.values_list("endpoint", flat=True)) == sorted(
        ["wado-study", "wado-metadata", "wado-series", "wado-metadata", "wado-instance", "wado-metadata",
         "wado-rendered", "wado-frames", "wado-rendered", "wado-bulkdata", "wado-metadata"])
    assert set(rows.values_list("organization_id", flat=True)) == {reader.organization.id}


def test_a_lost_object_is_503_not_a_cut_stream(reader, use_storage):
    (ct,) = archive(reader.organization, [test_file("CT_small.dcm", study_uid=generate_uid())])
    use_storage.delete(Instance.objects.get(sop_instance_uid=ct.uids[2]).storage_key)
    for suffix in ("", "/rendered", "/frames/1"):
        response = reader.get(reader.url(ct, suffix))
        assert response.status_code == 503 and response.headers["Retry-After"], suffix


def test_a_uid_two_clinics_hold_is_ambiguous_only_where_one_object_is_asked_for(live_platform, tenant_factory):
    """UIDs are unique per organization: a regional caller may see one UID twice."""
    first, _ = tenant_factory(role=Role.RADIOLOGIST)
    second, _ = tenant_factory(role=Role.RADIOLOGIST)
    raw = test_file("CT_small.dcm", study_uid=generate_uid())
    (ct,) = archive(first, [raw])
    archive(second, [raw])
    regional = Reader(live_platform, first, api_token_create(
        user=user_ensure(username="msk-regional", role=Role.REGIONAL_ADMIN, region=first.region)))
    assert [c for _, c in multipart_parts(regional.get(regional.url(ct)))] == [raw, raw]
    assert len(regional.get(regional.url(ct, "/metadata")).json()) == 2
    for suffix in ("/rendered", "/frames/1", "/bulkdata/7FE00010"):
        assert regional.get(regional.url(ct, suffix)).status_code == 409, suffix


# --- Accept parsing (no server) -----------------------------------------------------------------


def test_accept_parsing_follows_q_values_and_quoted_parameters():
    from medai.dicomweb.wado_accept import (
        PixelOffer,
        choose_pixel_offer,
        dicom_syntaxes,
        parse_accept,
        pixel_offers,
    )

    ranges = parse_accept('multipart/related; type="image/jpeg"; q=0.4, '
                          'multipart/related; type="application/octet-stream", image/png;q=0')
    assert [(r.media_type, r.part_type, r.q) for r in ranges] == [
        ("multipart/related", "application/octet-stream", 1.0), ("multipart/related", "image/jpeg", 0.4)]
    jpeg = pixel_offers("1.2.840.10008.1.2.4.50")
    assert choose_pixel_offer(ranges, jpeg) == PixelOffer("application/octet-stream", EXPLICIT_LE, decode=True)
    assert choose_pixel_offer(parse_accept("*/*"), jpeg) == PixelOffer("image/jpeg", "1.2.840.10008.1.2.4.50")
    assert choose_pixel_offer(parse_accept('multipart/related; type="image/jp2"'), jpeg) is None
    assert choose_pixel_offer(parse_accept('multipart/related; type="application/octet-stream"'),
                              pixel_offers("1.2.840.10008.1.2")) == PixelOffer("application/octet-stream", EXPLICIT_LE)
    assert dicom_syntaxes(parse_accept(f'{DICOM_ACCEPT}; transfer-syntax="1.2.3", text/html')) == {"1.2.3"}
    assert dicom_syntaxes(parse_accept(f"{DICOM_ACCEPT}, application/dicom+json")) == {"*"}


def test_enhanced_multiframe_rescale_and_window_come_from_the_frames_functional_groups():
    from medai.dicomweb.rendering import display_pixels

    def group(**items) -> Dataset:
        item = Dataset()
        for sequence, attributes in items.items():
            inner = Dataset()
            for keyword, value in attributes.items():
                setattr(inner, keyword, value)
            setattr(item, sequence, [inner])
        return item

    header = Dataset()
    header.PhotometricInterpretation, header.BitsStored, header.PixelRepresentation = "MONOCHROME2", 12, 0
    header.SharedFunctionalGroupsSequence = [group(
        PixelValueTransformationSequence={"RescaleSlope": 1, "RescaleIntercept": -1024, "RescaleType": "HU"},
        FrameVOILUTSequence={"WindowCenter": 40, "WindowWidth": 400})]
    header.PerFrameFunctionalGroupsSequence = [Dataset(), group(FrameVOILUTSequence={"WindowCenter": -600,
                                                                                     "WindowWidth": 1500})]
    stored = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    first = display_pixels(stored, copy.deepcopy(header), frame_index=0, window=None)
    second = display_pixels(stored, copy.deepcopy(header), frame_index=1, window=None)
    hounsfield = stored.astype(float) - 1024
    assert np.abs(first.astype(int) - linear_window(hounsfield, 40, 400)).max() <= 1  # shared groups
    assert np.abs(second.astype(int) - linear_window(hounsfield, -600, 1500)).max() <= 1  # per-frame wins
