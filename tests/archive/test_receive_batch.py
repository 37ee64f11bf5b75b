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


def test_a_concurrent_request_storing_the_same_instance_undoes_the_later_batch(tenant_factory, use_storage):
    import threading

    from django.db import connection

    from medai.archive.services import ConcurrentUpload

    organization, _ = tenant_factory()
    first, *series = make_series(count=3)
    with ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, [first])  # the study and series exist already, so neither request waits on the other

    def other_request():
        with ReceiveBatch(organization=organization, storage=use_storage) as batch:
            store_all(batch, series[:1])
        connection.close()

    with pytest.raises(ConcurrentUpload), ReceiveBatch(organization=organization, storage=use_storage) as batch:
        store_all(batch, series)  # rows pending: the other request commits the same instance meanwhile
        thread = threading.Thread(target=other_request)
        thread.start()
        thread.join(timeout=30)
    rows = Instance.objects.filter(organization=organization).order_by("id")
    assert [r.sop_instance_uid for r in rows] == [str(first.SOPInstanceUID), str(series[0].SOPInstanceUID)]
    assert {o.key for o in use_storage.list(prefix=f"org-{organization.id}/")} == {r.storage_key for r in rows}
