"""Both storage backends keep objects whole, stream them back, and report an unreachable store."""

import io
import time

import pytest

from medai.archive.storage import LocalStorage, S3Storage, StorageUnavailable
from medai.runtime.services import free_port


def test_objects_round_trip_and_list_on_both_backends(use_storage):
    data = bytes(range(256)) * 9000  # over two 1 MiB chunks
    key = f"test/{time.time_ns()}/object.dcm"
    use_storage.put(key, io.BytesIO(data), len(data))
    assert b"".join(use_storage.iter_chunks(key, chunk_size=1024 * 1024)) == data
    assert key in {o.key for o in use_storage.list(prefix="test/")}
    use_storage.delete(key)
    use_storage.delete(key)  # deleting twice is not an error
    assert key not in {o.key for o in use_storage.list(prefix="test/")}


def test_local_storage_refuses_keys_escaping_its_root(tmp_path):
    storage = LocalStorage(tmp_path / "objects")
    with pytest.raises(ValueError):
        storage.put("../outside.dcm", io.BytesIO(b"x"), 1)


def test_local_put_of_a_short_stream_leaves_nothing(tmp_path):
    storage = LocalStorage(tmp_path / "objects")
    with pytest.raises(StorageUnavailable):
        storage.put("a/b.dcm", io.BytesIO(b"12345"), 10)
    assert list(storage.list()) == []


def test_unreachable_s3_is_reported_quickly_as_unavailable():
    storage = S3Storage(f"http://127.0.0.1:{free_port()}", "k", "s", "bucket", "us-east-1")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        storage.put("a.dcm", io.BytesIO(b"x"), 1)
    with pytest.raises(StorageUnavailable):
        storage.check()
    assert time.monotonic() - started < 20  # fails fast: a STOW answers 503 rather than hanging
