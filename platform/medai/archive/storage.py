"""Object storage behind the archive: one small interface, two backends.

S3 (MinIO in production, any S3 server in tests) through the `minio` client, or plain files under
MEDAI_HOME for `medai up` on one machine. Every failure to reach the store is raised as
`StorageUnavailable`, which the DICOMweb layer answers with 503 + Retry-After.
"""

import functools
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import urllib3
from django.conf import settings
from minio import Minio
from minio.error import MinioException, S3Error

CHUNK_SIZE = 1024 * 1024


class StorageUnavailable(Exception):
    """The object store could not be reached or refused to work; the operation may be retried."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    modified: datetime


class ObjectStorage(ABC):
    @abstractmethod
    def put(self, key: str, fileobj: BinaryIO, length: int) -> None:
        """Store `length` bytes read from `fileobj` under `key`, atomically: all or nothing."""

    @abstractmethod
    def persist(self, keys: Iterable[str]) -> None:
        """Make the names of objects just `put` survive a crash; their bytes already do. Called once per
        batch of puts, before the index commits them."""

    @abstractmethod
    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Stream an object's bytes in chunks, never the whole object in memory."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; removing a missing one is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object under a prefix, for the orphan sweeper."""

    @abstractmethod
    def check(self) -> None:
        """Raise StorageUnavailable unless the store answers (readiness)."""

    def read(self, key: str) -> bytes:
        return b"".join(self.iter_chunks(key))


class LocalStorage(ObjectStorage):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._resolved_root = self.root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self._resolved_root):
            raise ValueError(f"storage key escapes the root: {key!r}")
        return path

    def put(self, key: str, fileobj: BinaryIO, length: int) -> None:
        """Written to a temporary name, fsynced, then renamed: a reader sees the whole object or none."""
        path = self._path(key)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
            with os.fdopen(fd, "wb") as out:
                copied = _copy_exactly(fileobj, out, length)
                out.flush()
                os.fsync(out.fileno())
            if copied != length:
                raise StorageUnavailable(f"short write: {copied} of {length} bytes")
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            raise StorageUnavailable(str(exc)) from exc
        finally:
            if tmp is not None:
                with suppress(OSError):
                    os.unlink(tmp)

    def persist(self, keys: Iterable[str]) -> None:
        """fsync the directories the objects were renamed into, and those created for them, once each."""
        directories: set[Path] = set()
        for parent in {key.rpartition("/")[0] for key in keys}:
            directory = self._path(parent)
            while directory not in directories and directory.is_relative_to(self._resolved_root):
                directories.add(directory)
                directory = directory.parent
        try:
            for directory in directories:
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise StorageUnavailable(str(exc)) from exc

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        try:
            with open(self._path(key), "rb") as f:
                while chunk := f.read(chunk_size):
                    yield chunk
        except OSError as exc:
            raise StorageUnavailable(str(exc)) from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(str(exc)) from exc

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        base = self.root
        if not base.exists():
            return
        for path in base.rglob("*"):
            key = path.relative_to(base).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith(".incoming-"):
                yield StoredObject(key, datetime.fromtimestamp(path.stat().st_mtime, tz=UTC))

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise StorageUnavailable(f"{self.root} is not writable")
            if shutil.disk_usage(self.root).free < 64 * 1024**2:
                raise StorageUnavailable(f"{self.root} has under 64 MiB free")
        except OSError as exc:
            raise StorageUnavailable(str(exc)) from exc


class S3Storage(ObjectStorage):
    # Fail fast when the store is down: the client retries the whole STOW on 503.
    TIMEOUT = urllib3.Timeout(connect=3, read=60)
    RETRIES = urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504))

    def __init__(self, endpoint_url: str, access_key: str, secret_key: str, bucket: str, region: str) -> None:
        parsed = urllib3.util.parse_url(endpoint_url)
        self.bucket = bucket
        self.client = Minio(
            parsed.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=parsed.scheme == "https",
            region=region,
            http_client=urllib3.PoolManager(timeout=self.TIMEOUT, retries=self.RETRIES, maxsize=32),
        )

    @staticmethod
    def _unavailable(exc: Exception) -> StorageUnavailable:
        return StorageUnavailable(f"{type(exc).__name__}: {exc}")

    def ensure_bucket(self) -> None:
        try:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def put(self, key: str, fileobj: BinaryIO, length: int) -> None:
        try:
            self.client.put_object(
                self.bucket, key, fileobj, length, content_type="application/dicom", part_size=64 * 1024**2
            )
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise self._unavailable(exc) from exc

    def persist(self, keys: Iterable[str]) -> None:
        """Nothing to do: S3 acknowledges a PUT once the object is durable."""

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        try:
            response = self.client.get_object(self.bucket, key)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable(exc) from exc
        try:
            yield from response.stream(chunk_size)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable(exc) from exc
        finally:
            response.close()
            response.release_conn()

    def delete(self, key: str) -> None:
        try:
            self.client.remove_object(self.bucket, key)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        try:
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                yield StoredObject(obj.object_name, obj.last_modified)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def check(self) -> None:
        try:
            if not self.client.bucket_exists(self.bucket):
                raise StorageUnavailable(f"bucket {self.bucket} does not exist")
        except S3Error as exc:
            raise self._unavailable(exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable(exc) from exc


def _copy_exactly(src: BinaryIO, dst: BinaryIO, length: int) -> int:
    copied = 0
    while copied < length:
        chunk = src.read(min(CHUNK_SIZE, length - copied))
        if not chunk:
            break
        dst.write(chunk)
        copied += len(chunk)
    return copied


@functools.cache
def _storage_for(endpoint_url: str, bucket: str, local_root: str) -> ObjectStorage:
    if endpoint_url:
        storage = S3Storage(endpoint_url, settings.S3_ACCESS_KEY, settings.S3_SECRET_KEY, bucket, settings.S3_REGION)
        storage.ensure_bucket()
        return storage
    return LocalStorage(Path(local_root))


def get_storage() -> ObjectStorage:
    """The configured store; keyed on the settings so tests can switch backends with `settings` overrides."""
    return _storage_for(settings.S3_ENDPOINT_URL, settings.S3_BUCKET, str(settings.LOCAL_STORAGE_ROOT))
