"""The boto3 client both services use for S3: executors read, the backend stores uploads."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from colsum.settings import Settings


def make_client(settings: Settings) -> Any:
    config = Config(
        connect_timeout=settings.s3_connect_timeout,
        read_timeout=settings.s3_read_timeout,
        retries={"mode": "standard", "max_attempts": 3},
        # Self-hosted endpoints (MinIO, moto) rarely have a DNS name per bucket.
        s3={"addressing_style": "path" if settings.aws_url else "auto"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.aws_url,
        aws_access_key_id=settings.aws_id,
        aws_secret_access_key=settings.aws_secret,
        region_name=settings.aws_region,
        config=config,
    )
