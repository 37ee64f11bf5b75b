"""STOW-RS against the live web tier: what a PACS sends, and what it gets back."""

import io
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medai.archive.dicomfile import PREAMBLE
from medai.archive.models import Instance, Study
from medai.archive.synthetic import make_instance, make_series, to_bytes
from tests.dicomweb.stow_client import failures, multipart, multipart_chunks, stored, stow

CANNOT_UNDERSTAND, SOP_CLASS_NOT_SUPPORTED, MISMATCH, DUPLICATE = 0xC000, 0x0122, 0xA900, 0x0111
OUT_OF_RESOURCES = 0xA700


def assert_archive_holds_exactly(storage, organization, sop_uids) -> None:
    """The index and the store both hold exactly the acknowledged instances of this organization."""
    rows = Instance.objects.filter(organization=organization)
    assert sorted(rows.values_list("sop_instance_uid", flat=True)) == sorted(sop_uids)
    keys = {o.key for o in storage.list(prefix=f"org-{organization.id}/")}
    assert keys == set(rows.values_list("storage_key", flat=True))


def client_for(base_url: str, token: str) -> DICOMwebClient:
    return DICOMwebClient(url=base_url + "/dicomweb", headers={"Authorization": f"Bearer {token}"})


def test_dicomweb_client_stores_generated_ct_cr_mg_studies(live_platform, tenant_factory, use_storage):
    organization, token = tenant_factory()
    client = client_for(live_platform, token)
    sent = []
    for modality, extra in [("CT", {}), ("DX", {"view_position": "PA"}), ("MG", {"view_position": "CC"})]:
        series = make_series(modality=modality, count=3, **extra)
        response = client.store_instances(series)
        assert len(response.ReferencedSOPSequence) == 3
        assert "FailedSOPSequence" not in response
        sent += [str(ds.SOPInstanceUID) for ds in series]
    assert_archive_holds_exactly(use_storage, organization, sent)
    # dicomweb-client sends files without the PS3.10 preamble; the archive stores complete files.
    assert all(use_storage.read(i.storage_key)[128:132] == b"DICM" for i in Instance.objects.filter(
        organization=organization))
    ct = Study.objects.get(organization=organization, modalities=["CT"])
    assert (ct.number_of_series, ct.number_of_instances, ct.patient_id) == (1, 3, "SYN-0001")


def test_resending_the_same_instances_is_idempotent(live_platform, tenant_factory, use_storage):
    organization, token = tenant_factory()
    files = [to_bytes(ds) for ds in make_series(count=2)]
    first = stow(live_platform, token, multipart(files))
    again = stow(live_platform, token, multipart(files))
    assert (first.status_code, again.status_code) == (200, 200)
    assert stored(first) == stored(again)
    assert_archive_holds_exactly(use_storage, organization, stored(first))
    assert Study.objects.get(organization=organization).number_of_instances == 2


def test_same_uid_with_other_content_is_refused_with_0111(live_platform, tenant_factory, use_storage):
    organization, token = tenant_factory()
    ds = make_instance(seed=1)
    assert stow(live_platform, token, multipart([to_bytes(ds)])).status_code == 200
    ds.PatientID = "SOMEONE-ELSE"
    response = stow(live_platform, token, multipart([to_bytes(ds)]))
    assert response.status_code == 409
    assert failures(response) == [(str(ds.SOPInstanceUID), DUPLICATE)]
    assert Instance.objects.get(organization=organization).metadata["00100020"]["Value"] == ["SYN-0001"]


def test_same_uid_in_another_study_with_other_content_is_refused_with_0111(live_platform, tenant_factory,
                                                                           use_storage):
    """Found only by the batch's lookup before its INSERT, after the object was written: refused all the same,
    and neither the object nor the new study and series stay behind."""
    organization, token = tenant_factory()
    first = make_instance(seed=1)
    assert stow(live_platform, token, multipart([to_bytes(first)])).status_code == 200
    clash, fresh = make_series(count=2)  # another study
    clash.SOPInstanceUID = clash.file_meta.MediaStorageSOPInstanceUID = first.SOPInstanceUID
    response = stow(live_platform, token, multipart([to_bytes(clash)]))
    assert response.status_code == 409
    assert failures(response) == [(str(first.SOPInstanceUID), DUPLICATE)]
    assert not Study.objects.filter(organization=organization, study_instance_uid=clash.StudyInstanceUID).exists()
    response = stow(live_platform, token, multipart([to_bytes(fresh), to_bytes(clash)]))
    assert response.status_code == 202
    assert (stored(response), failures(response)) == ([str(fresh.SOPInstanceUID)],
                                                      [(str(first.SOPInstanceUID), DUPLICATE)])
    assert_archive_holds_exactly(use_storage, organization, [str(first.SOPInstanceUID), str(fresh.SOPInstanceUID)])


def test_bad_parts_fail_alone_and_good_ones_are_stored(live_platform, tenant_factory, use_storage):
    organization, token = tenant_factory()
    good = make_instance()
    truncated = to_bytes(make_instance())[:-500]
    no_uid = make_instance()
    del no_uid.SOPInstanceUID
    unsupported = make_instance()
    unsupported.SOPClassUID = unsupported.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.1"
    parts = [to_bytes(good), b"this is not DICOM at all", truncated, to_bytes(no_uid), to_bytes(unsupported)]
    response = stow(live_platform, token, multipart(parts))
    assert response.status_code == 202
    assert stored(response) == [str(good.SOPInstanceUID)]
    assert [reason for _, reason in failures(response)] == [
        CANNOT_UNDERSTAND, CANNOT_UNDERSTAND, CANNOT_UNDERSTAND, SOP_CLASS_NOT_SUPPORTED
    ]
    assert_archive_holds_exactly(use_storage, organization, [str(good.SOPInstanceUID)])


def test_study_uid_contradicting_the_path_is_refused_with_a900(live_platform, tenant_factory, use_storage):
    organization, token = tenant_factory()
    ds = make_instance()
    response = stow(live_platform, token, multipart([to_bytes(ds)]), study=generate_uid())
    assert response.status_code == 409
    assert failures(response) == [(str(ds.SOPInstanceUID), MISMATCH)]
    matching = stow(live_platform, token, multipart([to_bytes(ds)]), study=str(ds.StudyInstanceUID))
    assert matching.status_code == 200
    assert matching.json()["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{ds.StudyInstanceUID}")
    assert_archive_holds_exactly(use_storage, organization, [str(ds.SOPInstanceUID)])


@pytest.mark.parametrize(
    "content_type",
    ["application/dicom", "multipart/related; type=\"application/dicom+json\"; boundary=x", "text/plain"],
)
def test_other_media_types_get_415(live_platform, tenant_factory, use_storage, content_type):
    organization, token = tenant_factory()
    response = stow(live_platform, token, to_bytes(make_instance()), content_type=content_type)
    assert response.status_code == 415
    assert not Instance.objects.filter(organization=organization).exists()


def test_broken_boundary_gets_400_and_stores_nothing(live_platform, tenant_factory, use_storage):
    organization, token = tenant_factory()
    body = multipart([to_bytes(make_instance())], boundary="actual-boundary")
    response = stow(live_platform, token, body, boundary="announced-boundary")
    assert response.status_code == 400
    assert "boundary" in response.json()["detail"]
    assert_archive_holds_exactly(use_storage, organization, [])


def test_body_cut_off_mid_part_stores_only_complete_parts(live_platform, tenant_factory, use_storage):
    organization, token = tenant_factory()
    complete, cut = make_instance(), make_instance()
    body = multipart([to_bytes(complete), to_bytes(cut)])
    body = body[: body.rindex(b"--medai-test-boundary") - 300]
    response = stow(live_platform, token, body)
    assert response.status_code == 202
    assert stored(response) == [str(complete.SOPInstanceUID)]
    assert_archive_holds_exactly(use_storage, organization, [str(complete.SOPInstanceUID)])


def test_real_sender_framings_are_accepted(live_platform, tenant_factory, use_storage):
    """Chunked transfer, leading CRLF, no CRLF after the closing boundary, quoted boundary,
    and a part Content-Type with a transfer-syntax parameter."""
    organization, token = tenant_factory()
    series = make_series(count=3)
    part_type = "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    chunks = multipart_chunks([to_bytes(ds) for ds in series], part_type=part_type, leading_crlf=True,
                              closing_crlf=False)
    content_type = 'multipart/related; type="application/dicom"; boundary="medai-test-boundary"'
    response = stow(live_platform, token, chunks, content_type=content_type)  # a generator: sent chunked
    assert response.status_code == 200, response.text
    assert sorted(stored(response)) == sorted(str(ds.SOPInstanceUID) for ds in series)
    assert_archive_holds_exactly(use_storage, organization, stored(response))


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm",
                                  "MR_small_bigendian.dcm", "rtplan.dcm"])
def test_pydicom_test_files_across_transfer_syntaxes(live_platform, tenant_factory, use_storage, name):
    organization, token = tenant_factory()
    path = get_testdata_file(name)
    ds = pydicom.dcmread(path)
    response = client_for(live_platform, token).store_instances([ds])
    assert len(response.ReferencedSOPSequence) == 1
    row = Instance.objects.get(organization=organization)
    assert row.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
    assert pydicom.dcmread(io.BytesIO(use_storage.read(row.storage_key))).SOPInstanceUID == ds.SOPInstanceUID


def test_declared_two_gigabyte_body_gets_413_before_it_is_sent(live_platform, tenant_factory, use_storage):
    organization, token = tenant_factory()
    address = urlsplit(live_platform)
    with socket.create_connection((address.hostname, address.port), timeout=30) as conn:
        conn.sendall(
            b"POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: multipart/related; type=\"application/dicom\"; boundary=b\r\n"
            b"Content-Length: 2147483648\r\n\r\n--b\r\n"
        )
        reply = conn.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")
    assert not Instance.objects.filter(organization=organization).exists()


def test_suspended_organization_uploads_are_refused_with_reason(live_platform, tenant_factory, use_storage):
    organization, token = tenant_factory()
    organization.status = organization.Status.SUSPENDED
    organization.save()
    response = stow(live_platform, token, multipart([to_bytes(make_instance())]))
    assert response.status_code == 403
    assert "suspended" in response.json()["detail"]
    assert not Instance.objects.filter(organization=organization).exists()


def test_roles_without_upload_rights_are_refused(live_platform, tenant_factory, use_storage):
    from medai.accounts.models import Role

    organization, token = tenant_factory(role=Role.RADIOLOGIST)
    assert stow(live_platform, token, multipart([to_bytes(make_instance())])).status_code == 403
    assert not Instance.objects.filter(organization=organization).exists()


def test_same_uids_in_two_organizations_stay_apart(live_platform, tenant_factory, use_storage):
    first, first_token = tenant_factory()
    second, second_token = tenant_factory(region_code="RU-SPE")
    files = [to_bytes(make_instance(seed=7))]
    assert stow(live_platform, first_token, multipart(files)).status_code == 200
    other = make_instance(seed=8)
    other.SOPInstanceUID = pydicom.dcmread(io.BytesIO(files[0])).SOPInstanceUID
    assert stow(live_platform, second_token, multipart([to_bytes(other)])).status_code == 200
    assert Instance.objects.filter(organization=first).get().sha256 != Instance.objects.filter(
        organization=second).get().sha256


def test_storage_outage_mid_upload_answers_503_and_keeps_only_what_was_acknowledged(
    transactional_db, web_server_factory, tenant_factory, settings
):
    import datetime as dt
    import time

    from medai.archive.services import storage_sweep_orphans
    from medai.archive.storage import get_storage
    from tests.tcp_proxy import TcpProxy

    s3 = urlsplit(settings.S3_ENDPOINT_URL)
    proxy = TcpProxy(s3.hostname, s3.port)
    base_url = web_server_factory(S3_ENDPOINT_URL=proxy.url)
    organization, token = tenant_factory()
    acknowledged = make_series(count=2)
    assert stow(base_url, token, multipart([to_bytes(ds) for ds in acknowledged])).status_code == 200

    def body_with_outage():
        files = [to_bytes(ds) for ds in make_series(count=4)]
        chunks = list(multipart_chunks(files))
        yield from chunks[:2]
        time.sleep(1.0)  # let the server write the first objects, then the store goes away
        proxy.cut()
        yield from chunks[2:]

    response = stow(base_url, token, body_with_outage())
    proxy.restore()
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    storage = get_storage()  # the S3 server itself, not through the proxy
    storage_sweep_orphans(older_than=dt.timedelta(0), storage=storage)
    assert_archive_holds_exactly(storage, organization, [str(ds.SOPInstanceUID) for ds in acknowledged])


def test_overload_answers_503_with_retry_after_instead_of_waiting(
    transactional_db, web_server_factory, tenant_factory, use_storage, storage_backend
):
    import concurrent.futures
    import time

    base_url = web_server_factory(DICOMWEB_MAX_CONCURRENT_STOW="1", WEB_WORKERS="1", **storage_backend)
    organization, token = tenant_factory()

    def slow_upload():
        files = [to_bytes(ds) for ds in make_series(count=2)]
        chunks = list(multipart_chunks(files))
        yield chunks[0]
        time.sleep(2.0)
        yield from chunks[1:]

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: stow(base_url, token, slow_upload()), range(3)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses
    assert all(r.headers["Retry-After"] for r in responses if r.status_code == 503)
    acknowledged = [uid for r in responses if r.status_code == 200 for uid in stored(r)]
    assert_archive_holds_exactly(use_storage, organization, acknowledged)


def test_chunked_body_over_the_limit_gets_413_and_stores_nothing(
    transactional_db, web_server_factory, tenant_factory, use_storage, storage_backend
):
    base_url = web_server_factory(DICOMWEB_MAX_STOW_BYTES="100000", **storage_backend)
    organization, token = tenant_factory()
    files = [to_bytes(ds) for ds in make_series(count=20)]  # ~185 kB, sent chunked
    response = stow(base_url, token, multipart_chunks(files))
    assert response.status_code == 413
    assert_archive_holds_exactly(use_storage, organization, [])


# The web tier under `ulimit -f`: its writes past this size of a file fail with EFBIG (Python ignores
# SIGXFSZ), as they fail with ENOSPC on a full disk. Small instances fit; a 2 MB one does not.
FILE_SIZE_LIMIT = 1024 * 1024


def server_out_of_room(web_server_factory, **env: str) -> str:
    """A web tier of its own, started under the file size limit."""
    return web_server_factory(MEDAI_TEST_RLIMIT_FSIZE=str(FILE_SIZE_LIMIT), **env)


def instance_of_size(size: int, **kwargs) -> pydicom.Dataset:
    """An instance whose Part 10 file is exactly `size` bytes (even), padded with an image comment."""
    ds = make_instance(rows=(size - 8192) // 1024, columns=512, **kwargs)
    ds.ImageComments = ""
    ds.ImageComments = "x" * (size - len(to_bytes(ds)))
    assert len(to_bytes(ds)) == size
    return ds


def test_temporary_files_running_out_of_room_fail_those_parts_with_a700_and_the_others_are_stored(
    transactional_db, web_server_factory, tenant_factory, use_storage, storage_backend
):
    """A part spooled to a temporary file, and one copied to add its preamble, cannot be kept: each fails
    alone with 0xA700, named by its UIDs, and the parts around them are stored."""
    base_url = server_out_of_room(web_server_factory, DICOMWEB_SPOOL_MEMORY_BYTES=str(256 * 1024),
                                  **storage_backend)
    organization, token = tenant_factory()
    study, series = generate_uid(), generate_uid()
    before, spooled, unprefixed, after = [
        make_instance(study_uid=study, series_uid=series, instance_number=1),
        make_instance(study_uid=study, series_uid=series, instance_number=2, rows=1024, columns=1024),
        # Sent without its preamble, as in-memory senders do: it fits, but its copy with one does not.
        instance_of_size(FILE_SIZE_LIMIT + 64, study_uid=study, series_uid=series, instance_number=3),
        make_instance(study_uid=study, series_uid=series, instance_number=4),
    ]
    files = [to_bytes(before), to_bytes(spooled), to_bytes(unprefixed)[len(PREAMBLE):], to_bytes(after)]
    response = stow(base_url, token, multipart(files))
    assert response.status_code == 202, response.text
    assert failures(response) == [(str(spooled.SOPInstanceUID), OUT_OF_RESOURCES),
                                  (str(unprefixed.SOPInstanceUID), OUT_OF_RESOURCES)]
    assert response.headers["Retry-After"].isdigit()
    acknowledged = [str(before.SOPInstanceUID), str(after.SOPInstanceUID)]
    assert stored(response) == acknowledged
    assert_archive_holds_exactly(use_storage, organization, acknowledged)
    found = client_for(base_url, token).search_for_instances(study_instance_uid=study)
    assert sorted(item["00080018"]["Value"][0] for item in found) == sorted(acknowledged)


@pytest.fixture(scope="module")
def local_home_out_of_room(tmp_path_factory) -> Path:
    """MEDAI_HOME of the server whose local object storage runs out of room: one for the module, one server."""
    return tmp_path_factory.mktemp("medai-out-of-room")


@pytest.mark.parametrize("rows", [1024, 5120], ids=["written-ahead", "written-by-the-request"])
def test_object_storage_running_out_of_room_fails_the_request_with_a700_and_keeps_what_was_acknowledged(
    transactional_db, web_server_factory, tenant_factory, settings, local_home_out_of_room, rows
):
    """Local object storage cannot take a 2 MB object (written by the batch's writers) or a 10 MB one
    (written by the request's thread): the batch is undone, every instance of the request fails with
    0xA700, and the study holds what an earlier request stored, no row, object or temporary file more."""
    home = local_home_out_of_room
    settings.S3_ENDPOINT_URL, settings.LOCAL_STORAGE_ROOT = "", home / "objects"
    from medai.archive.storage import get_storage

    storage = get_storage()
    base_url = server_out_of_room(web_server_factory, S3_ENDPOINT_URL="", MEDAI_HOME=str(home),
                                  DICOMWEB_SPOOL_MEMORY_BYTES=str(16 * 1024**2))  # the parts stay in memory
    organization, token = tenant_factory()
    study, series = generate_uid(), generate_uid()
    earlier = [make_instance(study_uid=study, series_uid=series, instance_number=n) for n in (1, 2)]
    assert stow(base_url, token, multipart([to_bytes(ds) for ds in earlier])).status_code == 200
    sent = [make_instance(study_uid=study, series_uid=series, instance_number=3),
            make_instance(study_uid=study, series_uid=series, instance_number=4, rows=rows, columns=1024),
            make_instance(study_uid=study, series_uid=series, instance_number=5)]
    response = stow(base_url, token, multipart([to_bytes(ds) for ds in sent]))
    assert response.status_code == 409, response.text
    assert sorted(failures(response)) == sorted((str(ds.SOPInstanceUID), OUT_OF_RESOURCES) for ds in sent)
    assert response.headers["Retry-After"].isdigit()
    acknowledged = [str(ds.SOPInstanceUID) for ds in earlier]
    assert_archive_holds_exactly(storage, organization, acknowledged)
    assert list((home / "objects").rglob(".incoming-*")) == []
    assert Study.objects.get(organization=organization).number_of_instances == 2
    found = client_for(base_url, token).search_for_instances(study_instance_uid=study)
    assert sorted(item["00080018"]["Value"][0] for item in found) == sorted(acknowledged)


@pytest.mark.parametrize(("code", "status", "full"), [
    ("XMinioStorageFull", 507, True), ("XMinioAdminBucketQuotaExceeded", 400, True), ("SlowDown", 507, True),
    ("AccessDenied", 403, False), ("InternalError", 500, False),
])
def test_minio_out_of_room_is_told_from_an_outage(code, status, full):
    """What MinIO answers when its drives or the bucket's quota are full is 0xA700, not a 503 outage."""
    from minio.error import S3Error
    from urllib3 import HTTPResponse

    from medai.archive.storage import StorageUnavailable
    from medai.dicomweb.stow import _out_of_resources

    answer = S3Error(HTTPResponse(status=status), code, "", "/medai/key", "request", "host")
    wrapped = StorageUnavailable(str(answer))
    wrapped.__cause__ = answer  # as the S3 backend raises it: `raise ... from exc`
    assert _out_of_resources(wrapped) is full
