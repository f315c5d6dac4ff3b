"""deploy/seed_s3.py, the compose job that puts sample.csv into the local S3 store."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import ROOT, delete_bucket, free_port

SCRIPT = ROOT / "deploy" / "seed_s3.py"
SAMPLE = ROOT / "sample.csv"


def seed(aws_url: str, bucket: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AWS_URL": aws_url,
        "AWS_ID": "testing",
        "AWS_SECRET": "testing",
        "S3_CONNECT_TIMEOUT": "1",
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), bucket, str(SAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def s3(bucket):
    """A client of the moto server, and a bucket name nobody has created yet."""
    name = f"seed-{uuid.uuid4().hex[:12]}"
    yield bucket.client, name, bucket.settings.aws_url
    delete_bucket(bucket.client, name)


def test_it_creates_the_bucket_and_uploads_the_file(s3):
    client, name, url = s3

    run = seed(url, name)

    assert run.returncode == 0, run.stderr
    body = client.get_object(Bucket=name, Key="sample.csv")["Body"].read()
    assert body == SAMPLE.read_bytes()


def test_running_it_again_keeps_the_bucket(s3):
    _client, name, url = s3
    assert seed(url, name).returncode == 0

    again = seed(url, name)

    assert again.returncode == 0, again.stderr


def test_an_unreachable_store_fails_with_a_message_not_a_traceback():
    run = seed(f"http://127.0.0.1:{free_port()}", "anything")

    assert run.returncode == 1
    assert run.stderr.startswith("seed_s3: ")
    assert "Traceback" not in run.stderr
