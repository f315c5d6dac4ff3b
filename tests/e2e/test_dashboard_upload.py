"""The dashboard's upload form sends the file's name, which the task keeps."""

from __future__ import annotations

import pytest
import requests
from selenium.webdriver.common.by import By

# The browser (one per module) and the stack, as the dashboard's own tests have them.
from tests.e2e.test_dashboard import SAMPLE, api, browser, in_done_row  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_an_upload_from_the_form_keeps_the_name_of_the_file(browser, api):  # noqa: F811
    browser.get(api)
    form = browser.find_element(By.ID, "submit")
    form.find_element(By.NAME, "file").send_keys(str(SAMPLE))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    task_id = in_done_row(browser, lambda row: row.get_attribute("data-task"))

    task = requests.get(f"{api}/tasks/{task_id}", timeout=10).json()
    assert task["source"]["filename"] == "sample.csv"
