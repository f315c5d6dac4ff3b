"""S3Storage over real HTTP: a moto server, and a proxy that makes the connection unstable."""

from __future__ import annotations

import dataclasses
import random
import time

import botocore.exceptions
import pytest

from colsum.errors import PermanentError, SourceChanged, TransientError
from colsum.task import S3Source
from executor.storage import ReadStats, RetryPolicy, S3Storage
from executor.storage.s3 import S3Object
from tests.conftest import free_port
from tests.faultproxy import FaultProxy, Faults

FAST = RetryPolicy(attempts=20, max_wait=0.05, budget=30)
DATA = random.Random(1).randbytes(6_000_000)


def storage(bucket, url: str | None = None, policy: RetryPolicy = FAST) -> S3Storage:
    return S3Storage(
        dataclasses.replace(bucket.settings, aws_url=url or bucket.settings.aws_url), policy
    )


def read(storage: S3Storage, bucket, key: str, stats: ReadStats | None = None) -> bytes:
    source = S3Source(bucket=bucket.name, key=key)
    with storage.open(source, stats or ReadStats(), "test") as stream:
        return stream.read()


@pytest.fixture
def proxy(request, moto_url):
    faults = getattr(request, "param", Faults())
    proxy = FaultProxy(int(moto_url.rsplit(":", 1)[1]), faults)
    yield proxy
    proxy.close()


def test_reads_an_object_whole_in_one_request(bucket):
    bucket.put("a.csv", DATA)
    stats = ReadStats()
    assert read(storage(bucket), bucket, "a.csv", stats) == DATA
    assert (stats.attempts, stats.resumes, stats.bytes_read) == (1, 0, len(DATA))
    assert stats.bytes_total == len(DATA)


def test_reads_an_empty_object(bucket):
    bucket.put("empty.csv", b"")
    assert read(storage(bucket), bucket, "empty.csv") == b""


@pytest.mark.parametrize("proxy", [Faults(cut=1.0, cut_within=2_000_000, seed=7)], indirect=True)
def test_cut_connections_are_resumed_not_restarted(bucket, proxy):
    bucket.put("a.csv", DATA)
    stats = ReadStats()
    assert read(storage(bucket, proxy.url), bucket, "a.csv", stats) == DATA
    assert proxy.counts.cuts >= 3
    assert stats.resumes == proxy.counts.cuts
    assert proxy.counts.bytes_down < 1.5 * len(DATA)


@pytest.mark.parametrize("proxy", [Faults(slow_down=0.5, delay=0.5, seed=3)], indirect=True)
def test_slow_down_answers_and_delays_are_retried(bucket, proxy):
    bucket.put("a.csv", DATA)
    for _ in range(4):
        assert read(storage(bucket, proxy.url), bucket, "a.csv") == DATA
    assert proxy.counts.slow_downs >= 1


def test_an_object_replaced_during_the_read_is_reported_not_mixed(bucket):
    bucket.put("a.csv", DATA)
    obj = S3Object(storage(bucket).client, S3Source(bucket=bucket.name, key="a.csv"))
    body = obj.open_at(0)
    body.readinto(bytearray(1000))
    body.close()  # as if the connection broke here
    bucket.put("a.csv", DATA[::-1])
    with pytest.raises(SourceChanged, match=rf"s3://{bucket.name}/a\.csv was replaced"):
        obj.open_at(1000)


def test_a_missing_key_fails_at_once_naming_it(bucket):
    started = time.monotonic()
    with pytest.raises(PermanentError, match=rf"s3://{bucket.name}/missing\.csv does not exist"):
        read(storage(bucket), bucket, "missing.csv")
    assert time.monotonic() - started < 2


def test_a_missing_bucket_fails_at_once_naming_it(bucket):
    source = S3Source(bucket="no-such-bucket-here", key="a.csv")
    stream = storage(bucket).open(source, ReadStats(), "test")
    with pytest.raises(PermanentError, match="bucket 'no-such-bucket-here' does not exist"):
        stream.read()


def test_an_unreachable_endpoint_gives_up_after_the_attempts(bucket):
    dead = f"http://127.0.0.1:{free_port()}"
    slow = dataclasses.replace(bucket.settings, aws_url=dead, s3_connect_timeout=0.5)
    policy = RetryPolicy(attempts=2, max_wait=0.01, budget=10)
    with pytest.raises(TransientError, match=f"s3://{bucket.name}/a.csv"):
        read(S3Storage(slow, policy), bucket, "a.csv")


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botocore.exceptions.ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("code", "status", "kind", "words"),
    [
        ("NoSuchKey", 404, PermanentError, "does not exist"),
        ("NoSuchBucket", 404, PermanentError, "bucket 'bkt' does not exist"),
        ("AccessDenied", 403, PermanentError, "denied (AccessDenied): check AWS_ID"),
        ("InvalidAccessKeyId", 403, PermanentError, "denied (InvalidAccessKeyId)"),
        ("SignatureDoesNotMatch", 403, PermanentError, "denied (SignatureDoesNotMatch)"),
        ("InvalidRange", 416, PermanentError, "InvalidRange"),
        ("PreconditionFailed", 412, SourceChanged, "was replaced"),
        ("SlowDown", 503, TransientError, "SlowDown"),
        ("InternalError", 500, TransientError, "InternalError"),
    ],
)
def test_s3_error_codes_map_to_permanent_or_transient(code, status, kind, words):
    obj = S3Object(client=None, source=S3Source(bucket="bkt", key="k.csv"))
    error = obj.translate(client_error(code, status))
    assert type(error) is kind
    assert words in str(error)
    assert "s3://bkt/k.csv" in str(error)


def scoped(bucket, **fields) -> S3Storage:
    return S3Storage(dataclasses.replace(bucket.settings, **fields), FAST)


def read_as(storage: S3Storage, bucket: str, key: str, client: str) -> bytes:
    source = S3Source(bucket=bucket, key=key)
    with storage.open(source, ReadStats(), "test", client=client) as stream:
        return stream.read()


def test_a_bucket_outside_s3_allowed_buckets_is_refused_naming_the_allowed(bucket):
    bucket.put("a.csv", b"1\n")
    storage = scoped(bucket, s3_allowed_buckets=("colsum-data", "exports"))
    with pytest.raises(PermanentError, match=r"allowed are colsum-data, exports"):
        read_as(storage, bucket.name, "a.csv", "acme")


def test_a_bucket_in_s3_allowed_buckets_is_read(bucket):
    bucket.put("a.csv", b"1\n")
    storage = scoped(bucket, s3_allowed_buckets=("colsum-data", bucket.name))
    assert read_as(storage, bucket.name, "a.csv", "acme") == b"1\n"


def test_own_uploads_are_read_from_the_upload_bucket_though_it_is_not_listed(bucket):
    bucket.put("uploads/acme/x.csv", b"1\n")
    storage = scoped(bucket, s3_allowed_buckets=("colsum-data",), upload_bucket=bucket.name)
    assert read_as(storage, bucket.name, "uploads/acme/x.csv", "acme") == b"1\n"


@pytest.mark.parametrize("key", ["uploads/bob/x.csv", "uploads/x.csv", "uploads//x.csv"])
def test_another_clients_upload_in_the_upload_bucket_is_refused(bucket, key):
    bucket.put(key, b"1\n")
    storage = scoped(bucket, upload_bucket=bucket.name)
    with pytest.raises(PermanentError, match=r"another client's upload"):
        read_as(storage, bucket.name, key, "acme")
