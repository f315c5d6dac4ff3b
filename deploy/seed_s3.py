"""Create a bucket in the S3 store the settings name, and upload files into it.

docker-compose runs this once, as the `s3-init` job, so that a fresh `docker compose up`
has `s3://colsum/sample.csv` to sum. It is safe to run again: an existing bucket is kept.

    python deploy/seed_s3.py BUCKET FILE [FILE ...]     # AWS_URL, AWS_ID, ... as for executors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from colsum.s3client import make_client
from colsum.settings import Settings


def seed(settings: Settings, bucket: str, files: list[Path]) -> None:
    s3 = make_client(settings)
    where = {}
    if settings.aws_region and settings.aws_region != "us-east-1":  # AWS insists
        where = {"CreateBucketConfiguration": {"LocationConstraint": settings.aws_region}}
    try:
        s3.create_bucket(Bucket=bucket, **where)
    except ClientError as error:
        if error.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise
    for path in files:
        s3.upload_file(str(path), bucket, path.name)
        print(f"uploaded {path} to s3://{bucket}/{path.name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bucket")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    settings = Settings.from_env()
    try:
        seed(settings, args.bucket, args.files)
    except (BotoCoreError, ClientError, OSError) as error:
        print(f"seed_s3: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
