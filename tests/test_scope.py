"""colsum/scope.py and the upload names under it: what a client's task may read, decided
from names alone (the executors check again where the file really is)."""

from __future__ import annotations

from pathlib import Path

import pytest

from colsum import uploads
from colsum.scope import Scope
from colsum.settings import Settings
from colsum.task import LocalSource

ID = "0123456789abcdef0123456789abcdef"


def test_the_settings_are_read_from_the_environment():
    settings = Settings.from_env({"CLIENT_DIRS": "true", "S3_ALLOWED_BUCKETS": " a-1, b-2 ,"})
    assert settings.client_dirs is True
    assert settings.s3_allowed_buckets == ("a-1", "b-2")
    assert Settings.from_env({}).s3_allowed_buckets == ()  # unset: any bucket


@pytest.mark.parametrize(
    ("name", "owner"),
    [
        (f"uploads/acme/{ID}.csv", "acme"),
        ("uploads/acme/anything/else.csv", "acme"),  # the whole folder is acme's
        (f"uploads/{ID}.csv", "anonymous"),  # flat, from before clients
        ("uploads/notes.csv", "anonymous"),
        (f"acme/uploads/{ID}.csv", "acme"),  # the CLIENT_DIRS layout
        ("acme/uploads/notes.csv", None),  # acme's own data, not an upload
        ("data/sales.csv", None),
    ],
)
def test_the_owner_of_a_name(name: str, owner: str | None):
    assert uploads.owner(name) == owner


def test_an_upload_path_is_relative_to_the_clients_root():
    assert uploads.path(ID, "acme") == f"uploads/acme/{ID}.csv"
    assert uploads.path(ID, "acme", client_dirs=True) == f"uploads/{ID}.csv"
    assert uploads.key(ID, "acme") == f"uploads/acme/{ID}.csv"


@pytest.mark.parametrize("client", ["..", "a/b", "", "Acme"])
def test_a_client_name_that_is_not_one_plain_folder_name_names_no_folder(client: str):
    with pytest.raises(ValueError, match="cannot name a folder"):
        Scope(Path("data"), client_dirs=True).root(client)


def test_with_client_dirs_a_path_of_ones_own_uploads_is_allowed():
    scope = Scope(Path("data"), client_dirs=True)
    assert scope.refusal(LocalSource(path=f"uploads/{ID}.csv"), "acme") is None
