"""QIDO-RS: what a viewer's search finds, what it gets back, and what it must never see.

Data goes in through the archive's real write path (ReceiveBatch); searches go through the live
web tier with dicomweb-client, a client nobody here wrote. Tests that only need the view (audit
rows, query counts, the limit cap) use Django's in-process client and run once.
"""

import hashlib
import io
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
import requests
from dicomweb_client import DICOMwebClient
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydicom import Dataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, generate_uid

from medai.accounts.models import Role
from medai.accounts.services import api_token_create, user_ensure
from medai.archive.models import StudyAccess
from medai.archive.services import ReceiveBatch
from medai.archive.synthetic import Patient, make_instance, to_bytes
from medai.dicomweb.dicomjson import attribute, dataset_metadata
from medai.dicomweb.qido_query import ATTRIBUTES

IVANOV = Patient(patient_id="P1", name="Ivanov^Ivan", birth_date="19700101", sex="M")
PETROVA = Patient(patient_id="P2", name="Petrova^Anna", birth_date="19851231", sex="F")
IVANOVA = Patient(patient_id="P3", name="Иванова^Мария", birth_date="20000229", sex="F")


def archive(organization, datasets: list[Dataset]) -> None:
    """Store through the archive's write path, as STOW-RS does."""
    with ReceiveBatch(organization=organization) as batch:
        for ds in datasets:
            data = to_bytes(ds)
            batch.store(
                dataset=ds,
                fileobj=io.BytesIO(data),
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                metadata=dataset_metadata(ds, has_pixel_data=True),
            )


def series_of(modality: str, count: int, *, study_uid: str, number: int = 1, patient: Patient = IVANOV,
              accession_number: str = "ACC", study_date: str = "20260115", **keywords) -> list[Dataset]:
    """`count` tiny instances of one series; `keywords` are DICOM attributes set on each."""
    series_uid = generate_uid()
    datasets = []
    for i in range(count):
        ds = make_instance(modality=modality, study_uid=study_uid, series_uid=series_uid, instance_number=i + 1,
                           rows=8, columns=8, patient=patient, accession_number=accession_number,
                           study_date=study_date, view_position="PA" if modality == "DX" else "")
        ds.SeriesNumber = number
        for keyword, value in keywords.items():
            setattr(ds, keyword, value)
        datasets.append(ds)
    return datasets


@dataclass
class Clinic:
    """One organization's archive: four studies named by accession number (A1, A2, A3, and A_%4 whose
    LIKE metacharacters must match literally), and their series (A1, A2, A3, D-CT, D-DX)."""

    organization: object
    token: str
    study: dict[str, str] = field(default_factory=dict)  # accession -> StudyInstanceUID
    series: dict[str, list[Dataset]] = field(default_factory=dict)  # series name -> its instances


def make_clinic(tenant_factory, **tenant) -> Clinic:
    organization, token = tenant_factory(**tenant)
    clinic = Clinic(organization, token)
    uid = {name: generate_uid() for name in ("A1", "A2", "A3", "A_%4")}
    clinic.study = uid
    clinic.series = {
        "A1": series_of("CT", 2, study_uid=uid["A1"], patient=IVANOV, accession_number="A1", study_date="20260110",
                        StudyTime="101500", StudyDescription="Chest CT"),
        "A2": series_of("MG", 1, study_uid=uid["A2"], patient=PETROVA, accession_number="A2", study_date="20260115",
                        StudyTime="143000", StudyDescription="Screening mammography",
                        ReferringPhysicianName="Sidorov^Sergey", SeriesDescription="Screening left"),
        "A3": series_of("DX", 1, study_uid=uid["A3"], patient=IVANOVA, accession_number="A3", study_date="20251231",
                        StudyTime="090000", StudyDescription="Chest X-ray"),
        "D-CT": series_of("CT", 3, study_uid=uid["A_%4"], patient=IVANOV, accession_number="A_%4",
                          study_date="20260120", StudyTime="101500.5", StudyDescription="Chest CT with contrast",
                          StudyID="7", SeriesDescription="Arterial contrast"),
        "D-DX": series_of("DX", 1, study_uid=uid["A_%4"], number=2, patient=IVANOV, accession_number="A_%4",
                          study_date="20260120"),
    }
    archive(organization, [ds for datasets in clinic.series.values() for ds in datasets])
    return clinic


def client_for(base_url: str, token: str) -> DICOMwebClient:
    return DICOMwebClient(url=base_url + "/dicomweb", headers={"Authorization": f"Bearer {token}"})


def values(results: list[dict], keyword: str) -> list:
    """One attribute of each result, read back by pydicom's own DICOM JSON parser."""
    return [Dataset.from_json(result).get(keyword) for result in results]


def retrieve_path(result: dict) -> str:
    """The path of a result's Retrieve URL. Its host is the request's Host header, which dicomweb-client
    sends without the port; the absolute URL is checked with requests in the paging test."""
    (url,) = result["00081190"]["Value"]
    return urlsplit(url).path


def accessions(results: list[dict]) -> list[str]:
    return sorted(values(results, "AccessionNumber"))


@pytest.fixture
def clinic(live_platform, tenant_factory) -> Clinic:
    return make_clinic(tenant_factory)


@pytest.fixture
def dicomweb(live_platform, clinic) -> DICOMwebClient:
    return client_for(live_platform, clinic.token)


# --- Matching ------------------------------------------------------------------------------------

STUDY_MATCHES = [
    ({"PatientID": "P1"}, ["A1", "A_%4"]),
    ({"00100020": "P2"}, ["A2"]),
    ({"PatientName": "ivanov*"}, ["A1", "A_%4"]),
    ({"PatientName": "IVANOV^IVAN"}, ["A1", "A_%4"]),
    ({"PatientName": "Ivanov"}, []),
    ({"PatientName": "иванов?^*"}, ["A3"]),
    ({"PatientBirthDate": "19800101-"}, ["A2", "A3"]),
    ({"PatientSex": "F"}, ["A2", "A3"]),
    ({"AccessionNumber": "A_%4"}, ["A_%4"]),
    ({"AccessionNumber": "A?"}, ["A1", "A2", "A3"]),
    ({"AccessionNumber": "A_*"}, ["A_%4"]),
    ({"StudyDate": "20260115"}, ["A2"]),
    ({"StudyDate": "20260110-20260115"}, ["A1", "A2"]),
    ({"StudyDate": "20260116-"}, ["A_%4"]),
    ({"StudyDate": "-20251231"}, ["A3"]),
    ({"StudyTime": "10"}, ["A1", "A_%4"]),
    ({"StudyTime": "-0959"}, ["A3"]),
    ({"StudyTime": "1400-"}, ["A2"]),
    ({"StudyDescription": "Chest*"}, ["A1", "A3", "A_%4"]),
    ({"StudyDescription": "chest*"}, []),
    ({"ModalitiesInStudy": "DX"}, ["A3", "A_%4"]),
    ({"ModalitiesInStudy": "MG,CT"}, ["A1", "A2", "A_%4"]),
    ({"ModalitiesInStudy": "MG\\DX"}, ["A2", "A3", "A_%4"]),
    ({"ReferringPhysicianName": "sidorov^*"}, ["A2"]),
    ({"StudyID": "7"}, ["A_%4"]),
    ({"PatientID": "P1", "ModalitiesInStudy": "DX"}, ["A_%4"]),
    ({"PatientID": "", "StudyDescription": "*"}, ["A1", "A2", "A3", "A_%4"]),
]


def test_study_matching_on_every_supported_key(dicomweb, clinic):
    uid = clinic.study
    uid_lists = [
        ({"StudyInstanceUID": f"{uid['A1']},{uid['A2']}"}, ["A1", "A2"]),
        ({"StudyInstanceUID": f"{uid['A2']}\\{uid['A3']}"}, ["A2", "A3"]),
        ({"0020000D": [uid["A1"], uid["A3"]]}, ["A1", "A3"]),  # repeated parameters
    ]
    for search_filters, expected in STUDY_MATCHES + uid_lists:
        found = dicomweb.search_for_studies(search_filters=search_filters, fuzzymatching=True)
        assert accessions(found) == expected, search_filters


def test_study_results_carry_the_default_attributes(dicomweb, clinic, live_platform):
    (result,) = dicomweb.search_for_studies(search_filters={"AccessionNumber": "A_%4"})
    study = Dataset.from_json(result)
    assert study.StudyInstanceUID == clinic.study["A_%4"]
    assert (study.PatientName, study.PatientID, study.PatientBirthDate, study.PatientSex) == (
        "Ivanov^Ivan", "P1", "19700101", "M")
    assert (study.StudyDate, study.StudyTime, study.StudyID) == ("20260120", "101500.5", "7")
    assert study.ModalitiesInStudy == ["CT", "DX"]
    assert (study.NumberOfStudyRelatedSeries, study.NumberOfStudyRelatedInstances) == (2, 4)
    assert study.ReferringPhysicianName == "Petrov^Petr"
    assert study.StudyDescription == "Chest CT with contrast"
    assert study.SpecificCharacterSet == "ISO_IR 192"
    assert retrieve_path(result) == f"/dicomweb/studies/{clinic.study['A_%4']}"
    assert list(result) == sorted(result)


def test_series_search_within_a_study_and_across_studies(dicomweb, clinic, live_platform):
    d_ct, d_dx = clinic.series["D-CT"][0], clinic.series["D-DX"][0]
    within = dicomweb.search_for_series(study_instance_uid=clinic.study["A_%4"])
    assert values(within, "SeriesInstanceUID") == [d_ct.SeriesInstanceUID, d_dx.SeriesInstanceUID]
    assert values(within, "SeriesNumber") == [1, 2]
    assert values(within, "NumberOfSeriesRelatedInstances") == [3, 1]
    assert values(within, "Modality") == ["CT", "DX"]
    assert values(within, "StudyInstanceUID") == [clinic.study["A_%4"]] * 2
    assert values(within, "PatientName") == [None, None]  # the study is named in the path
    assert retrieve_path(within[1]) == f"/dicomweb/studies/{d_dx.StudyInstanceUID}/series/{d_dx.SeriesInstanceUID}"

    def series_found(**search_filters) -> list[str]:
        return sorted(values(dicomweb.search_for_series(search_filters=search_filters), "SeriesInstanceUID"))

    def uids(*names: str) -> list[str]:
        return sorted(clinic.series[name][0].SeriesInstanceUID for name in names)

    assert series_found(Modality="DX") == uids("A3", "D-DX")
    assert series_found(PatientID="P1", Modality="CT") == uids("A1", "D-CT")  # a study key, matched via the study
    assert series_found(SeriesNumber=2) == uids("D-DX")
    assert series_found(SeriesDescription="*contrast*") == uids("D-CT")
    assert series_found(BodyPartExamined="BREAST") == uids("A2")
    assert series_found(SeriesInstanceUID=d_dx.SeriesInstanceUID) == uids("D-DX")
    across = dicomweb.search_for_series(search_filters={"Modality": "MG"})
    assert values(across, "PatientName") == ["Petrova^Anna"]  # all-series results carry the study's attributes


def test_instance_search_at_each_resource(dicomweb, clinic, live_platform):
    d_ct, d_dx = clinic.series["D-CT"], clinic.series["D-DX"][0]
    in_series = dicomweb.search_for_instances(study_instance_uid=d_dx.StudyInstanceUID,
                                              series_instance_uid=d_ct[0].SeriesInstanceUID)
    assert values(in_series, "SOPInstanceUID") == [ds.SOPInstanceUID for ds in d_ct]
    first = Dataset.from_json(in_series[0])
    assert (first.InstanceNumber, first.Rows, first.Columns, first.NumberOfFrames) == (1, 8, 8, 1)
    assert first.SOPClassUID == d_ct[0].SOPClassUID
    assert (first.StudyInstanceUID, first.SeriesInstanceUID) == (d_dx.StudyInstanceUID, d_ct[0].SeriesInstanceUID)
    assert "Modality" not in first
    assert retrieve_path(in_series[0]) == (
        f"/dicomweb/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}/instances/{first.SOPInstanceUID}")

    in_study = dicomweb.search_for_instances(study_instance_uid=d_dx.StudyInstanceUID)
    assert sorted(values(in_study, "Modality")) == ["CT", "CT", "CT", "DX"]
    assert set(values(in_study, "PatientName")) == {None}

    def instances_found(**search_filters) -> list[str]:
        return sorted(values(dicomweb.search_for_instances(search_filters=search_filters), "SOPInstanceUID"))

    assert instances_found(SOPInstanceUID=d_dx.SOPInstanceUID) == [d_dx.SOPInstanceUID]
    assert instances_found(SOPClassUID=DigitalXRayImageStorageForPresentation) == sorted(
        [clinic.series["A3"][0].SOPInstanceUID, d_dx.SOPInstanceUID])
    assert instances_found(InstanceNumber=2, PatientID="P1") == sorted(
        [clinic.series["A1"][1].SOPInstanceUID, d_ct[1].SOPInstanceUID])
    assert instances_found(InstanceNumber=10**20) == []  # past PostgreSQL's integer: no match, not an error
    everywhere = dicomweb.search_for_instances(search_filters={"Modality": "MG"})
    assert values(everywhere, "PatientName") == ["Petrova^Anna"]


# --- Paging and return keys ----------------------------------------------------------------------


def test_paging_with_limit_and_offset_until_an_empty_page(dicomweb, clinic, live_platform):
    everything = dicomweb.search_for_studies()
    assert values(everything, "StudyDate") == ["20260120", "20260115", "20260110", "20251231"]  # newest first
    assert dicomweb.search_for_studies(limit=1, get_remaining=True) == everything

    pages = []
    for offset in range(0, 6, 3):
        response = requests.get(f"{live_platform}/dicomweb/studies", params={"limit": 3, "offset": offset},
                                headers={"Authorization": f"Bearer {clinic.token}"}, timeout=10)
        assert response.headers["Content-Type"] == "application/dicom+json"
        pages.append(response)
    assert [len(page.json()) for page in pages] == [3, 1]
    assert pages[0].headers["Warning"].startswith("299 ")
    assert "Warning" not in pages[1].headers
    paged = pages[0].json() + pages[1].json()
    assert values(paged, "StudyInstanceUID") == values(everything, "StudyInstanceUID")
    assert [result["00081190"]["Value"] for result in paged] == [
        [f"{live_platform}/dicomweb/studies/{uid}"] for uid in values(paged, "StudyInstanceUID")]
    assert dicomweb.search_for_studies(offset=4) == []

    instances = dicomweb.search_for_instances(study_instance_uid=clinic.study["A_%4"], limit=2, get_remaining=True)
    assert len(instances) == len(set(values(instances, "SOPInstanceUID"))) == 4


def test_includefield_adds_attributes_from_the_index_and_the_stored_metadata(dicomweb, clinic, live_platform):
    d_dx = clinic.series["D-DX"][0]
    series = dicomweb.search_for_series(study_instance_uid=d_dx.StudyInstanceUID, fields=["PatientName", "00100020"])
    assert values(series, "PatientName") == ["Ivanov^Ivan"] * 2
    assert values(series, "PatientID") == ["P1"] * 2

    (dx,) = dicomweb.search_for_instances(study_instance_uid=d_dx.StudyInstanceUID,
                                          series_instance_uid=d_dx.SeriesInstanceUID,
                                          fields=["ViewPosition", "00280100", "StudyComments"])
    assert (Dataset.from_json(dx).ViewPosition, Dataset.from_json(dx).BitsAllocated) == ("PA", 16)
    assert "00324000" not in dx  # StudyComments: not in this data set, so not returned

    response = requests.get(
        f"{live_platform}/dicomweb/studies/{d_dx.StudyInstanceUID}/series/{d_dx.SeriesInstanceUID}/instances",
        params={"includefield": "ViewPosition,PhotometricInterpretation"},
        headers={"Authorization": f"Bearer {clinic.token}"}, timeout=10)
    assert values(response.json(), "PhotometricInterpretation") == ["MONOCHROME2"]
    assert values(response.json(), "ViewPosition") == ["PA"]

    (everything,) = dicomweb.search_for_instances(search_filters={"SOPInstanceUID": d_dx.SOPInstanceUID},
                                                  fields=["all"])
    full = Dataset.from_json({tag: element for tag, element in everything.items() if tag != "7FE00010"})
    assert (full.PatientName, full.ViewPosition, full.WindowCenter, full.Modality) == ("Ivanov^Ivan", "PA", 2048, "DX")
    (instance_url,) = everything["00081190"]["Value"]
    assert urlsplit(instance_url).path.endswith(f"/instances/{d_dx.SOPInstanceUID}")
    assert everything["7FE00010"]["BulkDataURI"] == f"{instance_url}/bulkdata/7FE00010"  # as /metadata has it
    (study,) = dicomweb.search_for_series(search_filters={"SeriesInstanceUID": d_dx.SeriesInstanceUID},
                                          fields=["all"])
    assert Dataset.from_json(study).NumberOfStudyRelatedInstances == 4


# --- Refusals ------------------------------------------------------------------------------------

BAD_QUERIES = [
    ("studies", "Foo=1", "Foo"),
    ("studies", "StudyDate=2026-01-15", "StudyDate"),
    ("studies", "StudyDate=20261345", "StudyDate"),
    ("studies", "PatientBirthDate=1970", "PatientBirthDate"),
    ("studies", "StudyTime=25", "StudyTime"),
    ("studies", "limit=ten", "limit"),
    ("studies", "limit=0", "limit"),
    ("studies", "offset=-1", "offset"),
    ("studies", "limit=1&limit=2", "limit"),
    ("studies", "offset=99999999999999999999", "offset"),
    ("studies", "PatientID=%00", "NUL"),
    ("studies", "SOPInstanceUID=1.2.3", "SOPInstanceUID"),
    ("studies", "StudyInstanceUID=abc", "StudyInstanceUID"),
    ("studies", "PatientID=a&PatientID=b", "PatientID"),
    ("studies", "ModalitiesInStudy=C*", "ModalitiesInStudy"),
    ("studies", "NumberOfStudyRelatedSeries=1", "NumberOfStudyRelatedSeries"),
    ("studies", "includefield=NoSuchKeyword", "NoSuchKeyword"),
    ("studies", "00400275.00321060=x", "00400275.00321060"),
    ("series", "SeriesNumber=x", "SeriesNumber"),
    ("instances", "ViewPosition=PA", "ViewPosition"),
    ("instances", "InstanceNumber=1.5", "InstanceNumber"),
]


def test_bad_parameters_get_400_with_a_reason(live_platform, tenant_factory):
    _, token = tenant_factory()
    for resource, query, named in BAD_QUERIES:
        response = requests.get(f"{live_platform}/dicomweb/{resource}?{query}",
                                headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 400, query
        assert named in response.json()["detail"], query
    xml_only = requests.get(f"{live_platform}/dicomweb/studies", timeout=10,
                            headers={"Authorization": f"Bearer {token}", "Accept": "application/dicom+xml"})
    assert xml_only.status_code == 406


# --- Tenancy -------------------------------------------------------------------------------------


def test_each_caller_finds_only_its_tenants(live_platform, tenant_factory):
    shared_uid = generate_uid()  # two clinics (wrongly, but really) reusing one Study Instance UID
    mine, my_token = tenant_factory(region_code="RU-MOW")
    neighbour, neighbour_token = tenant_factory(region_code="RU-MOW")
    far, far_token = tenant_factory(region_code="RU-SPE")
    archive(mine, series_of("CT", 1, study_uid=shared_uid, accession_number="MINE"))
    archive(neighbour, series_of("CR", 1, study_uid=generate_uid(), accession_number="NEIGHBOUR"))
    archive(far, series_of("MG", 1, study_uid=shared_uid, accession_number="FAR"))
    regional = user_ensure(username="mow-regional", role=Role.REGIONAL_ADMIN, region=mine.region)
    national = user_ensure(username="national", role=Role.PLATFORM_ADMIN)

    def found(token: str) -> list[str]:
        client = client_for(live_platform, token)
        studies = accessions(client.search_for_studies())
        assert accessions(client.search_for_series()) == studies
        assert sorted(set(accessions(client.search_for_instances()))) == studies
        return studies

    assert found(my_token) == ["MINE"]
    assert found(neighbour_token) == ["NEIGHBOUR"]
    assert found(far_token) == ["FAR"]
    assert found(api_token_create(user=regional)) == ["MINE", "NEIGHBOUR"]
    assert found(api_token_create(user=national)) == ["FAR", "MINE", "NEIGHBOUR"]

    mine_client = client_for(live_platform, my_token)
    (series,) = mine_client.search_for_series(study_instance_uid=shared_uid)
    assert Dataset.from_json(series).Modality == "CT"  # never the other clinic's MG under the same UID
    neighbour_study = Dataset.from_json(client_for(live_platform, neighbour_token).search_for_studies()[0])
    assert mine_client.search_for_series(study_instance_uid=neighbour_study.StudyInstanceUID) == []
    assert mine_client.search_for_instances(study_instance_uid=neighbour_study.StudyInstanceUID) == []
    assert mine_client.search_for_studies(search_filters={"AccessionNumber": "NEIGHBOUR"}) == []
    for resource in ("studies", "series", "instances", f"studies/{shared_uid}/series"):
        assert requests.get(f"{live_platform}/dicomweb/{resource}", timeout=10).status_code == 401


# --- In process: audit, query counts, limits -----------------------------------------------------


def in_process(client, token: str, path: str, **params):
    return client.get(f"/dicomweb/{path}", params, HTTP_AUTHORIZATION=f"Bearer {token}")


def archive_statements(client, token: str, path: str, **params) -> tuple[list, list[str]]:
    """A search's results and the statements it ran on the archive's tables (authentication aside)."""
    with CaptureQueriesContext(connection) as captured:
        results = in_process(client, token, path, **params).json()
    return results, [q["sql"].split()[0] for q in captured.captured_queries if "archive_" in q["sql"]]


def test_searches_are_audited_in_one_insert_with_few_queries(client, tenant_factory):
    clinic = make_clinic(tenant_factory)
    # One SELECT, one audit INSERT: nothing per result.
    results, sql = archive_statements(client, clinic.token, "studies", PatientID="P1")
    assert (len(results), sql) == (2, ["SELECT", "INSERT"])
    results, sql = archive_statements(client, clinic.token, "instances", includefield="ViewPosition")
    assert (len(results), sql) == (8, ["SELECT", "INSERT"])
    assert archive_statements(client, clinic.token, "studies", PatientID="nobody") == ([], ["SELECT"])

    rows = StudyAccess.objects.filter(organization=clinic.organization).order_by("endpoint", "study_instance_uid")
    assert sorted((row.endpoint, row.study_instance_uid) for row in rows) == sorted(
        [("qido-studies", clinic.study["A1"]), ("qido-studies", clinic.study["A_%4"])]
        + [("qido-instances", uid) for uid in clinic.study.values()])
    row = rows.filter(endpoint="qido-studies").first()
    assert row.path == "/dicomweb/studies?PatientID=P1"
    assert row.subject.endswith(f"-{Role.UPLOADER}")
    assert (row.role, row.region_id) == (Role.UPLOADER, clinic.organization.region_id)


def test_limit_is_capped_by_the_setting(client, tenant_factory, settings):
    clinic = make_clinic(tenant_factory)
    settings.DICOMWEB_QIDO_MAX_LIMIT = 2
    capped = in_process(client, clinic.token, "studies", limit=100)
    assert len(capped.json()) == 2
    assert capped.headers["Warning"] == (
        '299 http://testserver/dicomweb: "There are additional results that can be requested"')
    rest = in_process(client, clinic.token, "studies", offset=2)
    assert len(rest.json()) == 2
    assert "Warning" not in rest.headers


def test_fast_encoder_agrees_with_dicomjson_attribute():
    samples = {"PN": "Ivanov^Ivan", "DA": "20260120", "IS": "3", "US": 8, "CS": ["CT", "DX"], "UI": "1.2.3"}
    for attr in ATTRIBUTES.values():
        for value in (samples.get(attr.vr, "text"), None, ""):
            assert {attr.tag: attr.encode(value)} == attribute(attr.keyword, value), attr.keyword
    person_name = ATTRIBUTES["PatientName"].encode("Ivanov^Ivan=Иванов^Иван")
    assert person_name == {"vr": "PN", "Value": [{"Alphabetic": "Ivanov^Ivan", "Ideographic": "Иванов^Иван"}]}
