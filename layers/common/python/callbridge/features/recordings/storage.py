"""Stream a recording from its URL into S3.

    fetch_to_s3(url, *, bucket, key, allow_hosts=frozenset(), max_bytes, timeout_s,
                s3_client=None, kms_key_id=None, ssl_context=None) -> StoredRecording

- The body goes to S3 as it arrives: parts of PART_SIZE (8 MiB) into a multipart upload, or a single
  PutObject when the whole body fits in one part. At most one part is held in memory.
- Any failure (download error, TooLarge, S3 error, even KeyboardInterrupt) aborts the multipart upload,
  so no orphaned parts are left to be billed; nothing is stored then.
- `max_bytes` is checked against Content-Length before anything is uploaded, and against the bytes
  actually received while streaming.
- Encrypted at rest: SSE-S3 (AES256), or SSE-KMS with `kms_key_id`.
- Content type: the response's, if it is audio/*; else from the URL's extension (content_type_for);
  else application/octet-stream. Playback serves it back as the object's Content-Type.
- Errors: the FetchError types of netguard (TransientFetchError: retry later; PermanentFetchError and
  its subclasses BlockedAddress, DisallowedScheme, TooLarge: give up). S3 failures propagate as
  botocore exceptions (retry, through the queue).
- Writing the same key again overwrites it: a retried message stores the file once.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from callbridge.features.recordings.fetch import open_download

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

PART_SIZE = 8 * 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
EXTENSION_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "ogg": "audio/ogg",
    "m4a": "audio/mp4",
    "webm": "audio/webm",
}
# What boto3's own transfer manager uses: each part carries a CRC32 that S3 verifies, and the part
# checksums must then be listed again when the upload is completed.
_CHECKSUM: Final = "CRC32"


@dataclass(frozen=True, slots=True)
class StoredRecording:
    key: str
    size: int
    content_type: str
    sha256: str  # hex digest of the stored bytes


def content_type_for(response_type: str | None, *urls: str) -> str:
    """The type to store a recording under: the server's if it says audio/*, else the first of `urls`
    (the final one after redirects, then the original) whose path has a known audio extension."""
    if response_type and response_type.lower().startswith("audio/"):
        return response_type.lower()
    for url in urls:
        extension = posixpath.splitext(urlsplit(url).path)[1].lstrip(".").lower()
        if extension in EXTENSION_TYPES:
            return EXTENSION_TYPES[extension]
    return DEFAULT_CONTENT_TYPE


def fetch_to_s3(
    url: str,
    *,
    bucket: str,
    key: str,
    allow_hosts: Iterable[str] = frozenset(),
    max_bytes: int,
    timeout_s: float,
    s3_client: S3Client | None = None,
    kms_key_id: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> StoredRecording:
    """Download `url` (see fetch.open_download for the rules) into s3://bucket/key."""
    s3 = s3_client if s3_client is not None else _default_s3()
    with open_download(
        url, allow_hosts=allow_hosts, max_bytes=max_bytes, timeout_s=timeout_s, ssl_context=ssl_context
    ) as download:
        content_type = content_type_for(download.content_type, download.url, url)
        upload = _StreamingUpload(s3, bucket, key, _object_args(content_type, kms_key_id))
        try:
            for chunk in download.chunks():
                upload.write(chunk)
            upload.finish()
        except BaseException:
            upload.abort()
            raise
    return StoredRecording(key=key, size=upload.size, content_type=content_type, sha256=upload.sha256.hexdigest())


def _default_s3() -> S3Client:
    from callbridge.infra import aws

    return aws.s3()


def _object_args(content_type: str, kms_key_id: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"ContentType": content_type}
    if kms_key_id:
        args.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_key_id)
    else:
        args["ServerSideEncryption"] = "AES256"
    return args


class _StreamingUpload:
    """Buffers up to one part and sends each full part as it completes. The multipart upload is created
    only once a first full part exists, so small recordings cost one PutObject."""

    def __init__(self, s3: S3Client, bucket: str, key: str, object_args: dict[str, Any]) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._key = key
        self._object_args = object_args
        self._buffer = io.BytesIO()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self.size = 0
        self.sha256 = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.sha256.update(chunk)
        view = memoryview(chunk)
        while view:
            room = PART_SIZE - self._buffer.tell()
            self._buffer.write(view[:room])
            view = view[room:]
            if self._buffer.tell() == PART_SIZE:
                self._flush_part()

    def finish(self) -> None:
        if self._upload_id is None:
            self._buffer.seek(0)
            self._s3.put_object(Bucket=self._bucket, Key=self._key, Body=self._buffer, **self._object_args)
            return
        if self._buffer.tell():
            self._flush_part()
        self._s3.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        self._upload_id = None

    def abort(self) -> None:
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)
        except Exception:
            # The original error is the one worth raising; a bucket lifecycle rule for incomplete
            # multipart uploads is the backstop for what is left behind here.
            from callbridge.infra.observability import logger

            logger().warning(
                "aborting multipart upload failed", extra={"bucket": self._bucket, "key": self._key}, exc_info=True
            )

    def _flush_part(self) -> None:
        if self._upload_id is None:
            created = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ChecksumAlgorithm=_CHECKSUM, **self._object_args
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        self._buffer.seek(0)
        # A fresh buffer for the next part, so that the sent one can be freed as soon as S3 has it.
        body, self._buffer = self._buffer, io.BytesIO()
        sent = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm=_CHECKSUM,
        )
        part: CompletedPartTypeDef = {"PartNumber": number, "ETag": sent["ETag"]}
        if "ChecksumCRC32" in sent:
            part["ChecksumCRC32"] = sent["ChecksumCRC32"]
        self._parts.append(part)
