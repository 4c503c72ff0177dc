"""Recordings into S3, for real: a threaded file server on 127.0.0.1 (allowlisted for these tests) and
moto in server mode (the session's `aws_endpoint`, from conftest). The fake network of recording_server is active in every test, so that nothing
but loopback is ever connected to."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import ssl
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from callbridge.features.recordings import (
    BlockedAddress,
    DisallowedScheme,
    PermanentFetchError,
    StoredRecording,
    TooLarge,
    TransientFetchError,
    fetch_to_s3,
)
from callbridge.features.recordings.storage import PART_SIZE
from tests.integration.recording_server import FakeNet, RecordingServer, Reply, digest, generated, guarded_network

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNet]:
    yield from guarded_network(monkeypatch)


@pytest.fixture
def s3(aws_endpoint: str, net: FakeNet) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"recordings-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def server(net: FakeNet) -> Iterator[RecordingServer]:
    running = RecordingServer().start()
    try:
        yield running
    finally:
        running.stop()


def calls(s3: Any) -> Counter[str]:
    """Counts the S3 operations the client makes from now on."""
    seen: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        seen[model.name] += 1

    s3.meta.events.register("before-call.s3", count)
    return seen


def keys(s3: Any, bucket: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def pending_uploads(s3: Any, bucket: str) -> list[Any]:
    uploads: list[Any] = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return uploads


def stored_bytes(s3: Any, bucket: str, key: str) -> tuple[bytes, dict[str, Any]]:
    obj = s3.get_object(Bucket=bucket, Key=key)
    return obj["Body"].read(), obj


# ---------------------------------------------------------------------------------------------
# Byte for byte
# ---------------------------------------------------------------------------------------------
def test_a_small_recording_is_stored_byte_for_byte(s3: Any, bucket: str, server: RecordingServer) -> None:
    body = os.urandom(300_000)
    url = server.route("/rec/call-1.mp3", Reply(body=body, headers={"Content-Type": "audio/mpeg"}))
    seen = calls(s3)

    stored = fetch_to_s3(
        url, bucket=bucket, key="acc/call-1", allow_hosts=server.allow(), max_bytes=MiB, timeout_s=10, s3_client=s3
    )
    assert seen == {"PutObject": 1}

    assert stored == StoredRecording(
        key="acc/call-1", size=len(body), content_type="audio/mpeg", sha256=hashlib.sha256(body).hexdigest()
    )
    data, obj = stored_bytes(s3, bucket, "acc/call-1")
    assert data == body
    assert obj["ContentType"] == "audio/mpeg"
    assert obj["ServerSideEncryption"] == "AES256"
    assert server.seen[0].headers["host"] == f"127.0.0.1:{server.port}"
    assert server.seen[0].headers["accept-encoding"] == "identity"


def test_a_large_recording_goes_up_in_8_mib_parts(s3: Any, bucket: str, server: RecordingServer) -> None:
    body = generated(2 * PART_SIZE + 12345)
    size, sha = digest(body)
    url = server.route("/big.wav", Reply(body=body))  # chunked: no Content-Length
    seen = calls(s3)

    stored = fetch_to_s3(
        url, bucket=bucket, key="big", allow_hosts=server.allow(), max_bytes=64 * MiB, timeout_s=30, s3_client=s3
    )
    assert seen == {"CreateMultipartUpload": 1, "UploadPart": 3, "CompleteMultipartUpload": 1}

    assert (stored.size, stored.sha256, stored.content_type) == (size, sha, "audio/wav")
    data, obj = stored_bytes(s3, bucket, "big")
    assert hashlib.sha256(data).hexdigest() == sha
    assert obj["ContentType"] == "audio/wav"
    assert obj["ServerSideEncryption"] == "AES256"
    assert pending_uploads(s3, bucket) == []


def test_exactly_one_part_of_body_is_one_part(s3: Any, bucket: str, server: RecordingServer) -> None:
    url = server.route("/one.mp3", Reply(body=generated(PART_SIZE)))
    seen = calls(s3)
    stored = fetch_to_s3(
        url, bucket=bucket, key="one", allow_hosts=server.allow(), max_bytes=PART_SIZE, timeout_s=30, s3_client=s3
    )
    assert stored.size == PART_SIZE
    assert seen == {"CreateMultipartUpload": 1, "UploadPart": 1, "CompleteMultipartUpload": 1}
    assert s3.head_object(Bucket=bucket, Key="one")["ContentLength"] == PART_SIZE


def test_kms_encryption_when_a_key_is_given(aws_endpoint: str, s3: Any, bucket: str, server: RecordingServer) -> None:
    kms = boto3.client(
        "kms", endpoint_url=aws_endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    url = server.route("/k.mp3", Reply(body=b"ID3" + os.urandom(1000)))
    fetch_to_s3(
        url,
        bucket=bucket,
        key="k",
        allow_hosts=server.allow(),
        max_bytes=MiB,
        timeout_s=10,
        s3_client=s3,
        kms_key_id=key_id,
    )
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert key_id in head["SSEKMSKeyId"]


# ---------------------------------------------------------------------------------------------
# Content types
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "header", "expected"),
    [
        ("/r.bin", "audio/wav", "audio/wav"),
        ("/r.mp3", "audio/mpeg; charset=binary", "audio/mpeg"),
        ("/r.mp3", "application/octet-stream", "audio/mpeg"),
        ("/r.WAV", None, "audio/wav"),
        ("/r.ogg", "text/plain", "audio/ogg"),
        ("/r.m4a", None, "audio/mp4"),
        ("/r.webm", "video/webm", "audio/webm"),
        ("/download", "application/octet-stream", "application/octet-stream"),
        ("/r.txt", None, "application/octet-stream"),
    ],
)
def test_content_types(
    s3: Any, bucket: str, server: RecordingServer, path: str, header: str | None, expected: str
) -> None:
    url = server.route(path, Reply(body=b"x" * 100, headers={"Content-Type": header} if header else {}))
    stored = fetch_to_s3(
        url + "?token=abc",
        bucket=bucket,
        key="ct",
        allow_hosts=server.allow(),
        max_bytes=MiB,
        timeout_s=10,
        s3_client=s3,
    )
    assert stored.content_type == expected
    assert s3.head_object(Bucket=bucket, Key="ct")["ContentType"] == expected


def test_the_extension_of_the_final_url_counts(s3: Any, bucket: str, server: RecordingServer) -> None:
    server.route(
        "/files/abc.wav", Reply(body=b"RIFF" + b"\0" * 100, headers={"Content-Type": "application/octet-stream"})
    )
    url = server.route("/play", Reply(status=302, headers={"Location": "/files/abc.wav?sig=1"}))
    stored = fetch_to_s3(
        url + "?id=7", bucket=bucket, key="r", allow_hosts=server.allow(), max_bytes=MiB, timeout_s=10, s3_client=s3
    )
    assert stored.content_type == "audio/wav"


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------
_MEMORY_PROBE = textwrap.dedent(
    """
    import json, os, resource, socket, sys, tracemalloc, ipaddress

    _connect = socket.socket.connect
    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            assert ipaddress.ip_address(address[0]).is_loopback, address
        return _connect(sock, address)
    socket.socket.connect = guarded

    import boto3
    from callbridge.features.recordings import fetch_to_s3

    def rss(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    url, endpoint, bucket = sys.argv[1:4]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.list_buckets()  # botocore loads its models lazily: not the download's memory
    try:  # reset the peak RSS to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        peak_reset = True
    except OSError:
        peak_reset = False
    before = rss("VmRSS")
    tracemalloc.start()
    host_port = url.split("/")[2]  # the file server, that port only
    stored = fetch_to_s3(url, bucket=bucket, key="fifty", allow_hosts={host_port},
                         max_bytes=64 * 1024 * 1024, timeout_s=50, s3_client=s3)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(json.dumps({"size": stored.size, "sha256": stored.sha256, "traced_peak": traced_peak,
                      "rss_growth": rss("VmHWM") - before, "peak_reset": peak_reset}))
    """
)


def test_fifty_megabytes_stream_through_in_bounded_memory(
    aws_endpoint: str, s3: Any, bucket: str, server: RecordingServer
) -> None:
    """Measured in a separate process, the worker's stand-in: moto and the file server live in this
    one, and moto keeps the whole object in memory."""
    body = generated(50 * 1000 * 1000)
    size, sha = digest(body)
    url = server.route("/fifty.mp3", Reply(body=body, content_length=size, headers={"Content-Type": "audio/mpeg"}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/common/python", "functions"))}
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "HTTPS_PROXY", "HTTP_PROXY"):
        env.pop(name, None)
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, url, aws_endpoint, bucket],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        f"\n50 MB download: tracemalloc peak {report['traced_peak'] / MiB:.1f} MiB, "
        f"RSS growth {report['rss_growth'] / MiB:.1f} MiB (peak reset: {report['peak_reset']}), "
        f"{time.monotonic() - started:.1f} s"
    )
    assert (report["size"], report["sha256"]) == (size, sha)
    # One part being filled, one being sent, and slack: 3 parts, whatever the size of the recording.
    assert report["traced_peak"] < 3 * PART_SIZE
    assert report["rss_growth"] < 3 * PART_SIZE
    assert s3.head_object(Bucket=bucket, Key="fifty")["ContentLength"] == size


# ---------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------
def test_two_503s_then_success_store_the_file_once(s3: Any, bucket: str, server: RecordingServer) -> None:
    body = os.urandom(50_000)
    url = server.route(
        "/flaky.mp3",
        Reply(status=503, body=b"busy", headers={"Retry-After": "3"}),
        Reply(status=503, body=b"busy"),
        Reply(body=body),
    )

    def attempt() -> StoredRecording:
        return fetch_to_s3(
            url, bucket=bucket, key="flaky", allow_hosts=server.allow(), max_bytes=MiB, timeout_s=10, s3_client=s3
        )

    with pytest.raises(TransientFetchError) as first:
        attempt()
    assert (first.value.status, first.value.retry_after_s) == (503, 3.0)
    with pytest.raises(TransientFetchError):
        attempt()
    assert keys(s3, bucket) == []
    stored = attempt()
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert keys(s3, bucket) == ["flaky"]
    assert server.hits["/flaky.mp3"] == 3


def test_too_large_while_streaming_aborts_the_multipart_upload(s3: Any, bucket: str, server: RecordingServer) -> None:
    url = server.route("/huge.mp3", Reply(body=generated(12 * MiB)))  # chunked: found out on the way
    seen = calls(s3)
    with pytest.raises(TooLarge):
        fetch_to_s3(
            url, bucket=bucket, key="huge", allow_hosts=server.allow(), max_bytes=10 * MiB, timeout_s=30, s3_client=s3
        )
    assert seen["CreateMultipartUpload"] == 1
    assert seen["AbortMultipartUpload"] == 1
    assert pending_uploads(s3, bucket) == []
    assert keys(s3, bucket) == []


def test_too_large_by_content_length_uploads_nothing(s3: Any, bucket: str, server: RecordingServer) -> None:
    url = server.route("/declared.mp3", Reply(body=generated(3 * MiB), content_length=3 * MiB))
    seen = calls(s3)
    with pytest.raises(TooLarge):
        fetch_to_s3(url, bucket=bucket, key="d", allow_hosts=server.allow(), max_bytes=MiB, timeout_s=10, s3_client=s3)
    assert seen == {}
    assert keys(s3, bucket) == []


def test_a_body_cut_short_is_transient_and_leaves_nothing(s3: Any, bucket: str, server: RecordingServer) -> None:
    # Announces 20 MiB and hangs up after 9: one part is already in S3 by then.
    url = server.route("/cut.mp3", Reply(body=generated(9 * MiB), content_length=20 * MiB))
    seen = calls(s3)
    with pytest.raises(TransientFetchError):
        fetch_to_s3(
            url, bucket=bucket, key="cut", allow_hosts=server.allow(), max_bytes=64 * MiB, timeout_s=30, s3_client=s3
        )
    assert seen["UploadPart"] == 1
    assert seen["AbortMultipartUpload"] == 1
    assert pending_uploads(s3, bucket) == []
    assert keys(s3, bucket) == []


def test_an_s3_failure_mid_upload_aborts_too(s3: Any, bucket: str, server: RecordingServer) -> None:
    url = server.route("/s3fail.mp3", Reply(body=generated(3 * PART_SIZE)))
    parts = 0

    def fail_second_part(**_: Any) -> None:
        nonlocal parts
        parts += 1
        if parts == 2:
            raise RuntimeError("S3 is down")

    s3.meta.events.register("before-call.s3.UploadPart", fail_second_part)
    with pytest.raises(RuntimeError, match="S3 is down"):
        fetch_to_s3(
            url, bucket=bucket, key="s3fail", allow_hosts=server.allow(), max_bytes=64 * MiB, timeout_s=30, s3_client=s3
        )
    assert pending_uploads(s3, bucket) == []
    assert keys(s3, bucket) == []


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, PermanentFetchError), (403, PermanentFetchError), (410, PermanentFetchError), (204, PermanentFetchError),
     (500, TransientFetchError), (502, TransientFetchError), (429, TransientFetchError), (408, TransientFetchError)],
)  # fmt: skip
def test_status_codes(s3: Any, bucket: str, server: RecordingServer, status: int, error: type[Exception]) -> None:
    url = server.route("/status.mp3", Reply(status=status, body=b"" if status == 204 else b"nope"))
    with pytest.raises(error) as raised:
        fetch_to_s3(url, bucket=bucket, key="s", allow_hosts=server.allow(), max_bytes=MiB, timeout_s=10, s3_client=s3)
    assert getattr(raised.value, "status", None) == status
    assert keys(s3, bucket) == []


def test_404_is_permanent(s3: Any, bucket: str, server: RecordingServer) -> None:
    with pytest.raises(PermanentFetchError) as raised:
        fetch_to_s3(
            server.url("/missing.mp3"),
            bucket=bucket,
            key="m",
            allow_hosts=server.allow(),
            max_bytes=MiB,
            timeout_s=10,
            s3_client=s3,
        )
    assert not isinstance(raised.value, TransientFetchError)
    assert raised.value.status == 404


def test_a_compressed_body_is_refused(s3: Any, bucket: str, server: RecordingServer) -> None:
    url = server.route("/gz.mp3", Reply(body=b"\x1f\x8b" + b"\0" * 20, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(PermanentFetchError, match="Content-Encoding"):
        fetch_to_s3(url, bucket=bucket, key="gz", allow_hosts=server.allow(), max_bytes=MiB, timeout_s=10, s3_client=s3)


def test_a_trickling_server_is_cut_off_at_the_overall_deadline(s3: Any, bucket: str, server: RecordingServer) -> None:
    def trickle() -> Iterator[bytes]:
        for _ in range(100):
            yield b"x"
            time.sleep(0.1)

    url = server.route("/slow.mp3", Reply(body=trickle))
    started = time.monotonic()
    with pytest.raises(TransientFetchError, match="timed out"):
        fetch_to_s3(
            url, bucket=bucket, key="slow", allow_hosts=server.allow(), max_bytes=MiB, timeout_s=1.0, s3_client=s3
        )
    assert time.monotonic() - started < 2.0
    assert keys(s3, bucket) == []


def test_a_server_that_never_answers_times_out(s3: Any, bucket: str, server: RecordingServer) -> None:
    url = server.route("/mute.mp3", Reply(body=b"late", delay_s=3))
    started = time.monotonic()
    with pytest.raises(TransientFetchError):
        fetch_to_s3(
            url, bucket=bucket, key="mute", allow_hosts=server.allow(), max_bytes=MiB, timeout_s=0.5, s3_client=s3
        )
    assert time.monotonic() - started < 1.5


# ---------------------------------------------------------------------------------------------
# Redirects
# ---------------------------------------------------------------------------------------------
def test_redirects_within_the_allowlist_are_followed(
    s3: Any, bucket: str, server: RecordingServer, net: FakeNet
) -> None:
    net.add("files.test", "127.0.0.1")
    body = os.urandom(4096)
    server.route("/final.mp3", Reply(body=body))
    server.route("/hop2", Reply(status=307, headers={"Location": server.url("/final.mp3", host="files.test")}))
    server.route("/hop1", Reply(status=301, headers={"Location": "/hop2"}))
    url = server.route("/start", Reply(status=302, headers={"Location": "hop1"}))

    stored = fetch_to_s3(
        url,
        bucket=bucket,
        key="redir",
        allow_hosts=server.allow("127.0.0.1", "files.test"),
        max_bytes=MiB,
        timeout_s=10,
        s3_client=s3,
    )

    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert stored.content_type == "audio/mpeg"
    assert [s.path for s in server.seen] == ["/start", "/hop1", "/hop2", "/final.mp3"]
    assert server.seen[-1].headers["host"] == f"files.test:{server.port}"
    assert net.lookups == ["files.test"]


@pytest.mark.parametrize(
    ("location", "error"),
    [
        ("https://10.0.0.1/rec.mp3", BlockedAddress),
        ("https://169.254.169.254/latest/meta-data/", BlockedAddress),
        ("https://[::1]/rec.mp3", BlockedAddress),
        ("https://internal.test/rec.mp3", BlockedAddress),
        ("https://mixed.test/rec.mp3", BlockedAddress),
        ("https://loopback.test:{port}/rec.mp3", BlockedAddress),
        ("https://127.0.0.1.nip.test/rec.mp3", BlockedAddress),
        ("http://internal.test/rec.mp3", DisallowedScheme),
        ("http://public.test/rec.mp3", DisallowedScheme),
        ("file:///etc/passwd", DisallowedScheme),
        ("https://user:pw@public.test/rec.mp3", PermanentFetchError),
    ],
)
def test_a_redirect_to_a_private_destination_is_refused_before_connecting(
    s3: Any, bucket: str, server: RecordingServer, net: FakeNet, location: str, error: type[Exception]
) -> None:
    net.add("internal.test", "10.0.0.7")
    net.add("mixed.test", "1.1.1.1", "192.168.0.10")
    net.add("loopback.test", "127.0.0.1")
    net.add("127.0.0.1.nip.test", "127.0.0.1")
    url = server.route("/go", Reply(status=302, headers={"Location": location.format(port=server.port)}))
    with pytest.raises(error):
        fetch_to_s3(url, bucket=bucket, key="x", allow_hosts=server.allow(), max_bytes=MiB, timeout_s=10, s3_client=s3)
    assert {address for address, port in net.connects if port == server.port} == {"127.0.0.1"}
    assert [address for address, _port in net.connects if address != "127.0.0.1"] == []
    assert server.hits["/go"] == 1
    assert keys(s3, bucket) == []


def test_more_than_five_redirects_are_refused(s3: Any, bucket: str, server: RecordingServer) -> None:
    url = server.route("/loop", Reply(status=302, headers={"Location": "/loop"}))
    with pytest.raises(PermanentFetchError, match="redirects"):
        fetch_to_s3(
            url, bucket=bucket, key="loop", allow_hosts=server.allow(), max_bytes=MiB, timeout_s=10, s3_client=s3
        )
    assert server.hits["/loop"] == 6


# ---------------------------------------------------------------------------------------------
# TLS to a pinned address: SNI, certificate and Host still the hostname's
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test CA"))
        .issuer_name(name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("pbx.test"))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("pbx.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture
def tls_server(pki: dict[str, Path], net: FakeNet) -> Iterator[RecordingServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["cert"], pki["key"])
    running = RecordingServer(tls=context).start()
    try:
        yield running
    finally:
        running.stop()


def test_tls_to_the_pinned_address_verifies_the_hostname(
    s3: Any, bucket: str, tls_server: RecordingServer, net: FakeNet, pki: dict[str, Path]
) -> None:
    net.add("pbx.test", "127.0.0.1")
    net.add("other.test", "127.0.0.1")
    trust = ssl.create_default_context(cafile=str(pki["ca"]))
    body = os.urandom(2048)
    tls_server.route("/rec.mp3", Reply(body=body))

    stored = fetch_to_s3(
        tls_server.url("/rec.mp3", host="pbx.test"),
        bucket=bucket,
        key="tls",
        allow_hosts=tls_server.allow("pbx.test", "other.test"),
        max_bytes=MiB,
        timeout_s=10,
        s3_client=s3,
        ssl_context=trust,
    )
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert tls_server.sni == ["pbx.test"]
    assert tls_server.seen[0].headers["host"] == f"pbx.test:{tls_server.port}"
    assert net.lookups == ["pbx.test"]

    # Same address, another name: the certificate (pbx.test) does not match, and that is final.
    with pytest.raises(PermanentFetchError, match="certificate"):
        fetch_to_s3(
            tls_server.url("/rec.mp3", host="other.test"),
            bucket=bucket,
            key="tls2",
            allow_hosts=tls_server.allow("pbx.test", "other.test"),
            max_bytes=MiB,
            timeout_s=10,
            s3_client=s3,
            ssl_context=trust,
        )
    # And the default trust store does not know the test CA.
    with pytest.raises(PermanentFetchError, match="certificate"):
        fetch_to_s3(
            tls_server.url("/rec.mp3", host="pbx.test"),
            bucket=bucket,
            key="tls3",
            allow_hosts=tls_server.allow("pbx.test"),
            max_bytes=MiB,
            timeout_s=10,
            s3_client=s3,
        )
    assert keys(s3, bucket) == ["tls"]
