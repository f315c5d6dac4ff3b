"""An upload keeps the name the file had on the client's machine, as `source.filename`:
shown to people, cleaned of what could fake a line or a path, never used as a path."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from backend import create_app
from colsum.task import LocalSource
from tests.conftest import ROOT
from tests.test_swagger import schema

CSV = b"a,b,c,d,e,f,g,h,i,j\n1,2,3,4,5,6,7,8,9,10\n"


def upload(client, query: str = "", **headers: str):
    return client.post(f"/tasks{query}", data=CSV, content_type="text/csv", headers=headers)


def test_the_filename_query_parameter_is_kept_in_the_source(client, store):
    created = upload(client, "?filename=sales-2026-11.csv").get_json()
    assert created["source"]["filename"] == "sales-2026-11.csv"
    assert created["source"]["path"] == f"uploads/anonymous/{created['id']}.csv"  # not the name
    assert store.get(created["id"]).source.filename == "sales-2026-11.csv"


def test_a_task_with_a_filename_is_a_task_as_the_spec_describes_it(client):
    created = upload(client, "?filename=sales.csv").get_json()
    schema(yaml.safe_load((ROOT / "swagger.yaml").read_text()), "Task").validate(created)


def test_a_content_disposition_header_names_the_file_too(client):
    plain = upload(client, **{"Content-Disposition": 'attachment; filename="q3 report.csv"'})
    encoded = upload(
        client, **{"Content-Disposition": "attachment; filename*=UTF-8''%C3%A9t%C3%A9.csv"}
    )
    assert plain.get_json()["source"]["filename"] == "q3 report.csv"
    assert encoded.get_json()["source"]["filename"] == "été.csv"


def test_an_upload_without_a_name_has_no_filename_field(client):
    assert "filename" not in upload(client).get_json()["source"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ann\\q3.csv", "q3.csv"),
        ("two\nlines.csv", "twolines.csv"),
        ("bell\x07\x1b[31mred.csv", "bell[31mred.csv"),
        ("evil\u202ecsv.exe", "evilcsv.exe"),  # a right-to-left override would show 'exe.vsc'
        ("   ", None),
        ("x" * 1000 + ".csv", "x" * 255),
    ],
)
def test_a_filename_is_cleaned_of_paths_control_characters_and_excess_length(sent, kept):
    assert LocalSource(path="uploads/a.csv", filename=sent).filename == kept


def test_a_filename_with_a_newline_in_the_query_is_kept_on_one_line(client):
    created = upload(client, "?filename=a%0D%0Ab.csv").get_json()
    assert created["source"]["filename"] == "ab.csv"


def test_a_json_task_may_not_name_a_filename(client):
    response = client.post(
        "/tasks", json={"storage": "local", "path": "sample.csv", "filename": "x.csv"}
    )
    assert response.status_code == 400
    assert "unknown field 'filename'" in response.get_json()["error"]


# Per client (issue 13): an upload is stored in its client's folder, and a task may read
# only its own client's uploads and only the buckets S3_ALLOWED_BUCKETS lists.

UPLOAD = "0123456789abcdef0123456789abcdef.csv"


@pytest.fixture
def acme(monkeypatch) -> str:
    """Requests come from the client `acme` (as its token would say)."""
    monkeypatch.setattr("backend.auth.identify", lambda *_: ("acme", False))
    return "acme"


def test_an_upload_is_stored_in_its_clients_folder(client, store, settings, acme):
    created = upload(client).get_json()
    assert created["client"] == "acme"
    assert created["source"]["path"] == f"uploads/acme/{created['id']}.csv"
    assert (settings.data_dir / "uploads" / "acme" / f"{created['id']}.csv").read_bytes() == CSV
    assert store.get(created["id"]).client == "acme"


@pytest.mark.settings(client_dirs=True)
def test_with_client_dirs_an_upload_is_stored_below_the_clients_dir_named_from_it(
    client, settings, acme
):
    created = upload(client).get_json()
    assert created["source"]["path"] == f"uploads/{created['id']}.csv"  # relative to acme/
    assert (settings.data_dir / "acme" / "uploads" / f"{created['id']}.csv").read_bytes() == CSV


def test_an_upload_to_the_upload_bucket_is_keyed_below_its_client(bucket, acme):
    app = create_app(dataclasses.replace(bucket.settings, upload_bucket=bucket.name))
    try:
        created = upload(app.test_client()).get_json()
    finally:
        app.extensions["colsum"].publisher.close()
    key = f"uploads/acme/{created['id']}.csv"
    assert created["source"] == {"storage": "s3", "bucket": bucket.name, "key": key}
    assert bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read() == CSV


@pytest.mark.parametrize("path", [f"uploads/bob/{UPLOAD}", f"./uploads//{UPLOAD}"])
def test_a_task_naming_another_clients_upload_is_400_and_stores_nothing(client, store, acme, path):
    """Whether or not the file is there: the answer tells nothing about other clients."""
    response = client.post("/tasks", json={"storage": "local", "path": path})
    assert response.status_code == 400
    assert response.get_json()["error"] == (
        "'path' names another client's upload: a task reads only its own client's"
        " (yours are in uploads/acme/)"
    )
    assert store.counts()["queued"] == 0


def test_a_task_naming_its_own_upload_is_accepted(client, acme):
    response = client.post("/tasks", json={"storage": "local", "path": f"uploads/acme/{UPLOAD}"})
    assert response.status_code == 202


@pytest.mark.settings(upload_bucket="colsum-uploads", s3_allowed_buckets=("colsum-data",))
def test_an_s3_task_naming_another_clients_upload_key_is_400(client, acme):
    other = {"storage": "s3", "bucket": "colsum-uploads", "key": "uploads/bob/x.csv"}
    response = client.post("/tasks", json=other)
    assert response.status_code == 400
    assert "another client's upload in UPLOAD_BUCKET" in response.get_json()["error"]
    own = {**other, "key": "uploads/acme/x.csv"}
    assert client.post("/tasks", json=own).status_code == 202  # the bucket is not listed


@pytest.mark.settings(s3_allowed_buckets=("colsum-data", "exports"))
def test_an_s3_task_on_a_bucket_not_allowed_is_400_naming_the_allowed_ones(client, store):
    response = client.post("/tasks", json={"storage": "s3", "bucket": "other", "key": "a.csv"})
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "'bucket': 'other' is not one this service reads (S3_ALLOWED_BUCKETS):"
        " allowed are colsum-data, exports"
    }
    assert store.counts()["queued"] == 0
    allowed = {"storage": "s3", "bucket": "exports", "key": "a.csv"}
    assert client.post("/tasks", json=allowed).status_code == 202


@pytest.mark.parametrize(
    ("bucket", "key"),
    [("colsum-uploads", "uploads/acme/../bob/x.csv"), ("colsum-data", "../colsum-uploads/x.csv")],
)
@pytest.mark.settings(upload_bucket="colsum-uploads", s3_allowed_buckets=("colsum-data",))
def test_a_key_with_dot_dot_segments_is_400_where_buckets_are_confined(client, acme, bucket, key):
    """A store or proxy that resolved them could lead to another client's folder or bucket."""
    response = client.post("/tasks", json={"storage": "s3", "bucket": bucket, "key": key})
    assert response.status_code == 400
    assert response.get_json()["error"] == "'key' must not have '.' or '..' segments here"
