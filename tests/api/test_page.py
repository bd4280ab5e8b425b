"""The search page, driven in headless Chromium (Debian's chromium and chromium-driver)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("headless Chromium is missing: apt-get install chromium chromium-driver (.ci/run does)")
    profile = tempfile.mkdtemp(prefix="semsearch-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_a_query_typed_in_the_page_shows_highlighted_results(base_url: str, browser: webdriver.Chrome) -> None:
    browser.get(base_url + "/")
    box = browser.find_element(By.ID, "q")
    box.send_keys("cancer patients study results")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".hit mark"))
    hits = browser.find_elements(By.CSS_SELECTOR, ".hit")
    assert len(hits) == 3
    assert hits[0].find_element(By.TAG_NAME, "h3").text == "Bio"
    # The words matching the query are marked, not the whole chunk.
    assert [m.text for m in hits[0].find_elements(By.TAG_NAME, "mark")] == ["cancer", "patients", "study", "results"]
    assert "score" in hits[0].find_element(By.CLASS_NAME, "meta").text
    assert "?q=cancer" in browser.current_url


def test_the_mode_selector_and_the_matched_words(hybrid_url: str, browser: webdriver.Chrome) -> None:
    browser.get(hybrid_url + "/")
    Select(browser.find_element(By.ID, "mode")).select_by_value("keyword")
    browser.find_element(By.ID, "q").send_keys("zqx-4471 door")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".hit mark"))
    top = browser.find_elements(By.CSS_SELECTOR, ".hit")[0]
    assert top.find_element(By.TAG_NAME, "h3").text == "Parts"
    assert [m.text for m in top.find_elements(By.TAG_NAME, "mark")] == ["ZQX", "4471", "door"]
    assert "keyword #1" in top.find_element(By.CLASS_NAME, "meta").text
    assert "mode=keyword" in browser.current_url
    browser.get(hybrid_url + "/?q=" + "图书馆" + "&mode=hybrid")  # a shared link keeps its mode
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".hit mark"))
    assert Select(browser.find_element(By.ID, "mode")).first_selected_option.text == "hybrid"
    assert browser.find_elements(By.CSS_SELECTOR, ".hit mark")[0].text == "图书馆"


def test_documents_endpoint(base_url: str) -> None:
    doc = httpx.get(f"{base_url}/documents/bio", timeout=30).json()
    assert doc == {
        "id": "bio",
        "title": "Bio",
        "text": "cancer patients study results",
        "metadata": {"kind": "science"},
        "status": "indexed",
    }
    missing = httpx.get(f"{base_url}/documents/nope", timeout=30)
    assert missing.status_code == 404 and "no document with id 'nope'" in missing.json()["detail"]


def test_a_filter_typed_in_the_page_keeps_only_matching_results(base_url: str, browser: webdriver.Chrome) -> None:
    browser.get(base_url + "/")
    browser.find_element(By.ID, "q").send_keys("cancer patients study results")
    filter_box = browser.find_element(By.ID, "filter")
    filter_box.send_keys('{"kind": {"$in": ["animal", "sky"]}')  # a typo: one closing brace short
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "status").text)
    assert "not valid JSON" in browser.find_element(By.ID, "status").text
    assert browser.find_elements(By.CSS_SELECTOR, ".hit") == []
    filter_box.send_keys("}")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".hit mark"))
    # Without the filter "Bio" ranks first (the test above); with it, only pets and space remain.
    titles = sorted(h.find_element(By.TAG_NAME, "h3").text for h in browser.find_elements(By.CSS_SELECTOR, ".hit"))
    assert titles == ["Pets", "Space"]
    assert browser.find_element(By.ID, "status").text == ""
    assert "filter=" in browser.current_url
    # A filter the server refuses shows the server's reason.
    filter_box.clear()
    filter_box.send_keys('{"year": {"$gt": "x"}}')
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "status").text)
    assert "filter field 'year': $gt needs a number, got 'x'" in browser.find_element(By.ID, "status").text
