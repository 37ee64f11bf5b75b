"""A receive batch is all or nothing: objects written for a batch that fails are removed again."""

import hashlib
import io

import pytest

from medai.archive.dicomfile import read_received
from medai.archive.models import Instance, Study
from medai.archive.services import ReceiveBatch
from medai.archive.synthetic import make_series, to_bytes


def store_all(batch: ReceiveBatch, datasets) -> None:
    for ds in datasets:
        raw = to_bytes(ds)
        received = read_received(io.BytesIO(raw), len(raw))
        batch.store(dataset=received.dataset, fileobj=io.BytesIO(raw), size=len(raw),
                    sha256=hashlib.sha256(raw).hexdigest(), metadata=received.metadata)


def test_a_failed_index_write_leaves_no_object_behind(tenant_factory, use_storage):
    organization, _ = tenant_factory()
    with pytest.raises(RuntimeError), ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, make_series(count=3))
        batch.flush()  # objects are written in the background
        assert len(list(use_storage.list(prefix=f"org-{organization.id}/"))) == 3
        raise RuntimeError("the index commit failed")
    assert not Instance.objects.filter(organization=organization).exists()
    assert not Study.objects.filter(organization=organization).exists()
    assert list(use_storage.list(prefix=f"org-{organization.id}/")) == []


def test_counters_and_modalities_are_kept_per_study(tenant_factory, use_storage):
    organization, _ = tenant_factory()
    ct = make_series(modality="CT", count=2)
    sc = make_series(modality="MG", count=1, study_uid=str(ct[0].StudyInstanceUID))
    with ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, ct)
    with ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, sc + ct)  # the CT instances again: not counted twice
    study = Study.objects.get(organization=organization)
    assert (study.number_of_series, study.number_of_instances, study.modalities) == (2, 3, ["CT", "MG"])
    assert study.size_bytes == sum(i.size_bytes for i in Instance.objects.filter(study=study))


def _other_request(organization, storage, datasets) -> None:
    """Another request storing `datasets`, committed before it returns (its own thread and connection)."""
    import threading

    from django.db import connection

    def run():
        with ReceiveBatch(organization=organization, storage=storage) as batch:
            store_all(batch, datasets)
        connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)


def test_an_instance_stored_meanwhile_by_another_request_is_indexed_once(tenant_factory, use_storage):
    organization, _ = tenant_factory()
    first, *series = make_series(count=3)
    with ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, [first])  # the study and series exist already, so neither request waits on the other

    with ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, series)  # rows pending: the other request commits the same instance meanwhile
        _other_request(organization, use_storage, series[:1])
    rows = Instance.objects.filter(organization=organization).order_by("id")
    assert [r.sop_instance_uid for r in rows] == [str(ds.SOPInstanceUID) for ds in [first, *series]]
    assert {o.key for o in use_storage.list(prefix=f"org-{organization.id}/")} == {r.storage_key for r in rows}
    assert Study.objects.get(organization=organization).number_of_instances == 3


def test_a_concurrent_request_storing_the_same_instance_undoes_the_later_batch(
    tenant_factory, use_storage, monkeypatch
):
    """The other request commits between this batch's lookup and its INSERT: the unique index refuses the row."""
    from medai.archive.services import ConcurrentUpload

    organization, _ = tenant_factory()
    first, *series = make_series(count=3)
    with ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, [first])

    lookup = ReceiveBatch._stored_sha256

    def lookup_then_race(batch, sop_uids):
        found = lookup(batch, sop_uids)
        if batch is racing:
            _other_request(organization, use_storage, series[:1])
        return found

    monkeypatch.setattr(ReceiveBatch, "_stored_sha256", lookup_then_race)
    with pytest.raises(ConcurrentUpload), ReceiveBatch(organization=organization, storage=use_storage) as racing:
        store_all(racing, series)
    rows = Instance.objects.filter(organization=organization).order_by("id")
    assert [r.sop_instance_uid for r in rows] == [str(first.SOPInstanceUID), str(series[0].SOPInstanceUID)]
    assert {o.key for o in use_storage.list(prefix=f"org-{organization.id}/")} == {r.storage_key for r in rows}


def test_a_uid_stored_in_another_series_with_other_content_is_reported_and_leaves_nothing(
    tenant_factory, use_storage
):
    from medai.archive.models import Series
    from medai.archive.services import DuplicateConflict

    organization, _ = tenant_factory()
    stored = make_series(count=1)[0]
    with ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, [stored])
    elsewhere = make_series(count=2)  # another study and series; its first instance reuses the stored UID
    elsewhere[0].SOPInstanceUID = elsewhere[0].file_meta.MediaStorageSOPInstanceUID = stored.SOPInstanceUID

    with pytest.raises(DuplicateConflict), ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, elsewhere)
    conflicts = []
    with ReceiveBatch(organization=organization, storage=use_storage, on_conflict=conflicts.append) as batch:
        store_all(batch, elsewhere[:1])
    assert conflicts == [str(stored.SOPInstanceUID)]
    assert Instance.objects.filter(organization=organization).count() == 1
    assert not Study.objects.filter(organization=organization, study_instance_uid=elsewhere[0].StudyInstanceUID)
    assert not Series.objects.filter(organization=organization, series_instance_uid=elsewhere[0].SeriesInstanceUID)
    assert len(list(use_storage.list(prefix=f"org-{organization.id}/"))) == 1
