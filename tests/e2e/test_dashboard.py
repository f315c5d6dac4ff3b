"""The dashboard at `/`, in a real headless Chromium driven by Selenium."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import ROOT, _unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS = ROOT / "test-artifacts"
SAMPLE = ROOT / "sample.csv"  # 500 rows
# Chromium's own calls home are refused on a closed network, loudly and repeatedly.
QUIET = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        _unavailable(
            "no chromium or chromedriver: install the Debian packages chromium and "
            "chromium-driver (make test does, when apt is there)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", *QUIET):
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.add_argument("--window-size=1280,900")
    # An explicit driver path: Selenium Manager would otherwise try to download one.
    chrome = webdriver.Chrome(service=DriverService(driver), options=options)
    yield chrome
    chrome.quit()


def wait(browser: webdriver.Chrome, check, timeout: float = 30):
    """Until check(browser) is truthy; the live part of the page is replaced every second,
    so an element found a moment ago may be gone: look again."""

    def retrying(driver):
        try:
            return check(driver)
        except StaleElementReferenceException:
            return False

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(retrying)


def task_row(task_status: str):
    def find(driver):
        rows = driver.find_elements(By.CSS_SELECTOR, f"#tasks tr[data-status='{task_status}']")
        return rows[0] if rows else None

    return find


def in_done_row(browser: webdriver.Chrome, read):
    """read(row) of the first done task's row, once it is truthy; the row is looked up again
    whenever a refresh replaced it under `read`."""

    def check(driver):
        row = task_row("done")(driver)
        return row is not None and read(row)

    return wait(browser, check)


def cells_of(row) -> list[str]:
    return [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]


def open_sums(browser: webdriver.Chrome) -> None:
    in_done_row(browser, lambda row: row.find_element(By.TAG_NAME, "summary").click() or True)


def submit(browser: webdriver.Chrome, source: str) -> str:
    form = browser.find_element(By.ID, "submit")
    form.find_element(By.NAME, "source").send_keys(source)
    Select(form.find_element(By.NAME, "header")).select_by_visible_text("yes")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    result = browser.find_element(By.ID, "submit-result")
    return wait(browser, lambda _: result.text != "Submitting…" and result.text)


@pytest.fixture
def api(settings, services) -> str:
    """A backend and one executor, with sample.csv in DATA_DIR."""
    shutil.copy(SAMPLE, settings.data_dir / "sample.csv")
    url = services.backend()
    services.executor()
    return url


def test_a_submitted_task_shows_up_and_reaches_done(browser, api):
    browser.get(api)
    assert browser.title == "Colsum"
    wait(browser, lambda d: d.find_element(By.ID, "executor-count").text == "1")

    answer = submit(browser, "sample.csv")

    assert answer.startswith("Task ") and answer.endswith(" is queued."), answer
    cells = in_done_row(browser, cells_of)
    assert cells[1:3] == ["sample.csv", "done"]
    assert cells[3] == "100%"
    assert cells[4] == "500"
    assert browser.find_element(By.ID, "active").text == "0"
    open_sums(browser)
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))


def test_the_sums_stay_open_across_refreshes(browser, api):
    browser.get(api)
    submit(browser, "sample.csv")
    open_sums(browser)

    time.sleep(2.5)  # two refreshes of the live part

    sums = browser.find_element(By.CSS_SELECTOR, "#tasks details")
    assert sums.get_attribute("open") is not None
    assert "revenue 4617083.41" in " ".join(sums.text.split())


def test_a_backend_gone_away_is_said_at_the_top_and_the_figures_greyed(browser, services):
    api = services.backend()
    browser.get(api)

    services.started[0].stop()

    banner = wait(browser, lambda d: d.find_element(By.ID, "connection").text)
    assert banner.startswith("Not updating")
    assert "stale" in browser.find_element(By.ID, "live").get_attribute("class")


def test_a_refused_task_shows_the_api_s_message(browser, services):
    api = services.backend()
    browser.get(api)

    answer = submit(browser, "../outside.csv")

    assert "DATA_DIR" in answer
    assert browser.find_element(By.ID, "submit-result").get_attribute("class") == "error"


def test_an_uploaded_file_is_summed(browser, api):
    browser.get(api)
    form = browser.find_element(By.ID, "submit")
    form.find_element(By.NAME, "file").send_keys(str(SAMPLE))
    Select(form.find_element(By.NAME, "header")).select_by_visible_text("yes")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    source = in_done_row(browser, lambda row: row.find_element(By.CSS_SELECTOR, ".source").text)
    assert source.startswith("uploads/")
