"""An upload keeps the name the file had on the client's machine, as `source.filename`:
shown to people, cleaned of what could fake a line or a path, never used as a path."""

from __future__ import annotations

import pytest
import yaml

from colsum.task import LocalSource
from tests.conftest import ROOT
from tests.test_swagger import schema

CSV = b"a,b,c,d,e,f,g,h,i,j\n1,2,3,4,5,6,7,8,9,10\n"


def upload(client, query: str = "", **headers: str):
    return client.post(f"/tasks{query}", data=CSV, content_type="text/csv", headers=headers)


def test_the_filename_query_parameter_is_kept_in_the_source(client, store):
    created = upload(client, "?filename=sales-2026-11.csv").get_json()
    assert created["source"]["filename"] == "sales-2026-11.csv"
    assert created["source"]["path"] == f"uploads/{created['id']}.csv"  # not the name
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
