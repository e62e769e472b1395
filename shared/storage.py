"""Results in S3-compatible storage (MinIO, SeaweedFS, AWS): one prefix per job."""

import json
import os
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from cachetools import TTLCache

from shared.retrying import call_with_retry, transient_s3_error
from shared.settings import Settings

if TYPE_CHECKING:  # the boto3-stubs types (a dev dependency): a misspelt S3 call fails the type check
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef, DeleteTypeDef, LifecycleRuleTypeDef

T = TypeVar("T")
_MISSING = {"NoSuchKey", "404", "NotFound"}


def job_key(job_id: str, name: str) -> str:
    """Key of a job's file: jobs/<id>/<name> (name as in a CLI output folder, e.g. filters/3.png)."""
    return f"jobs/{job_id}/{name}"


CHUNK_RECORDS = "chunks/"
# Outside jobs/: where readiness probes write (see Storage.probe_write).
WRITE_PROBES = "probes/"
# A grid's pictures are read this many at once: a job answered from the cache waits for them (shared/finish.py).
PICTURE_READS = 32
# One pool of transfer threads per process, started on first use (after any fork) and kept: starting
# threads per call cost more than a one-filter job's transfers. Its tasks must not wait on it.
TRANSFERS = ThreadPoolExecutor(PICTURE_READS, thread_name_prefix="filterviz-s3")
# An object to store: key, bytes, content type.
Upload = tuple[str, bytes, str]


def chunk_record_name(chunk_index: int) -> str:
    """Name of the record a finished chunk leaves: its filters' losses and who ran it."""
    return f"{CHUNK_RECORDS}{chunk_index}.json"


class MissingObject(LookupError):
    """An object that should be in the bucket is not (never written, deleted or expired)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} is not in the bucket")
        self.key = key


@dataclass(frozen=True)
class StoredObject:
    """An object being read: its size, and its body, read in pieces (`iter_chunks`) and closed after."""

    length: int
    body: "StreamingBody"


class Storage:
    """Reads and writes job files; signs URLs for the public endpoint."""

    def __init__(self, settings: Settings, retry_seconds: float = 0) -> None:
        """retry_seconds: how long transient S3 errors are retried (workers ride out outages; the
        API answers at once)."""
        self.bucket = settings.s3_bucket
        self._retry_seconds = retry_seconds
        self._client = self._make_client(settings, settings.s3_endpoint_url)
        # Signing is local: this client never connects, it only signs for the host browsers see.
        public = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        self._signer = self._make_client(settings, public)
        self._presign_seconds = settings.presign_seconds
        # Signing costs as much as the rest of a status poll: reuse a URL while over half its life is left.
        self._presigned: TTLCache[str, str] = TTLCache(maxsize=4096, ttl=settings.presign_seconds / 2)
        self._presigned_lock = threading.Lock()

    @staticmethod
    def _make_client(settings: Settings, endpoint: str) -> "S3Client":
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            region_name=settings.s3_region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=3,
                read_timeout=30,
                # botocore absorbs blips; longer outages are retried by _retrying, for a window of time.
                retries={"max_attempts": 5, "mode": "standard"},
                # Enough for PICTURE_READS at once (botocore's default is 10).
                max_pool_connections=PICTURE_READS,
            ),
        )

    def ensure_bucket(self) -> None:
        """Create the bucket when it doesn't exist yet."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if error.response["Error"]["Code"] not in _MISSING:
                raise
            self._client.create_bucket(Bucket=self.bucket)

    def expire_after(self, days: int) -> bool:
        """Set the bucket's lifecycle rule: objects under jobs/ are deleted `days` after they are written.
        False when the server has no lifecycle support (the caller says so; nothing else expires them)."""
        rule: LifecycleRuleTypeDef = {"ID": "filterviz-results", "Status": "Enabled", "Filter": {"Prefix": "jobs/"},
                "Expiration": {"Days": days}}  # fmt: skip
        try:
            self._client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": [rule]}
            )
        except ClientError as error:
            if error.response["Error"]["Code"] not in {"NotImplemented", "MethodNotAllowed"}:
                raise
            return False
        return True

    def check(self) -> None:
        """Raise when the bucket can't be reached (for readiness)."""
        self._client.head_bucket(Bucket=self.bucket)

    def probe_write(self) -> None:
        """Raise unless the bucket takes a write now (an S3 server can answer yet refuse writes, e.g.
        when full): a tiny object of this process's own is put and deleted."""
        key = f"{WRITE_PROBES}{socket.gethostname()}-{os.getpid()}"
        self._client.put_object(Bucket=self.bucket, Key=key, Body=b"probe", ContentType="text/plain")
        self._client.delete_object(Bucket=self.bucket, Key=key)

    def _retrying(self, call: Callable[[], T]) -> T:
        return call_with_retry(call, self._retry_seconds, transient_s3_error)

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store bytes under key, replacing what was there (re-run chunks overwrite their own files)."""
        self._retrying(
            lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        )

    def put_all(self, uploads: Iterable[Upload]) -> None:
        """Store several objects at once: for small ones the round trips dominate, so they overlap."""
        list(TRANSFERS.map(lambda upload: self.put(*upload), uploads))

    def put_json(self, key: str, value: Any) -> None:
        """Store a JSON document."""
        self.put(key, json.dumps(value, indent=1).encode(), "application/json")

    def copy(self, source: str, key: str) -> bool:
        """Copy an object within the bucket (no bytes through here); False when there is no `source`."""
        try:
            origin: CopySourceTypeDef = {"Bucket": self.bucket, "Key": source}
            self._retrying(lambda: self._client.copy_object(Bucket=self.bucket, Key=key, CopySource=origin))
        except ClientError as error:
            if error.response["Error"]["Code"] in _MISSING:
                return False
            raise
        return True

    def get(self, key: str) -> bytes | None:
        """The bytes under key, or None when there is no such object."""
        return self._retrying(lambda: self._read_whole(key))

    def open(self, key: str) -> StoredObject | None:
        """The object under key with its body not read yet (to be streamed, then closed), or None when
        there is no such object."""
        return self._retrying(lambda: self._open(key))

    def _read_whole(self, key: str) -> bytes | None:
        found = self._open(key)
        return None if found is None else found.body.read()

    def _open(self, key: str) -> StoredObject | None:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response["Error"]["Code"] in _MISSING:
                return None
            raise
        return StoredObject(response["ContentLength"], response["Body"])

    def exists(self, key: str) -> bool:
        """Whether an object is under key (a HEAD: no bytes read)."""
        try:
            self._retrying(lambda: self._client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as error:
            if error.response["Error"]["Code"] in _MISSING:
                return False
            raise
        return True

    def read(self, key: str) -> bytes:
        """The bytes under key, which should be there; MissingObject names the key when it isn't."""
        data = self.get(key)
        if data is None:
            raise MissingObject(key)
        return data

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under prefix."""
        return [key for key, _ in self.list_objects(prefix)]

    def list_objects(self, prefix: str) -> list[tuple[str, datetime]]:
        """Every key under prefix, with when it was last written."""

        def listing() -> list[tuple[str, datetime]]:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            return [(item["Key"], item["LastModified"]) for page in pages for item in page.get("Contents", [])]

        return self._retrying(listing)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under prefix (1000 a request, S3's most); the count deleted."""
        keys = self.list_keys(prefix)
        for start in range(0, len(keys), 1000):
            batch: DeleteTypeDef = {"Objects": [{"Key": key} for key in keys[start : start + 1000]], "Quiet": True}
            self._retrying(partial(self._client.delete_objects, Bucket=self.bucket, Delete=batch))
        return len(keys)

    def chunk_records(self, job_id: str) -> dict[int, dict[str, Any]]:
        """The records the job's finished chunks left, by chunk index."""
        keys = self.list_keys(job_key(job_id, CHUNK_RECORDS))
        records = [record for record in TRANSFERS.map(self.get_json, keys) if record is not None]
        return {record["chunk"]: record for record in records}

    def get_json(self, key: str) -> Any | None:
        """A stored JSON document, or None."""
        data = self.get(key)
        return None if data is None else json.loads(data)

    def presign(self, key: str) -> str:
        """A GET URL for key that a browser can open, signed for the public endpoint; valid for at
        least half of FILTERVIZ_PRESIGN_SECONDS."""
        with self._presigned_lock:
            url = self._presigned.get(key)
        if url is None:
            url = self._signer.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self._presign_seconds
            )
            with self._presigned_lock:
                self._presigned[key] = url
        return url
