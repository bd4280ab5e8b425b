"""The search page, driven in headless Chromium (Debian's chromium and chromium-driver)."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from search.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# The page draws its hits at once, then again once the model has picked each hit's best sentence.
SETTLED = "#results[data-sentences-by=model]"


def settled(browser: webdriver.Chrome) -> None:
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, SETTLED))


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("headless Chromium is missing: apt-get install chromium chromium-driver (make test does)")
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
    settled(browser)
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
    settled(browser)
    top = browser.find_elements(By.CSS_SELECTOR, ".hit")[0]
    assert top.find_element(By.TAG_NAME, "h3").text == "Parts"
    assert [m.text for m in top.find_elements(By.TAG_NAME, "mark")] == ["ZQX", "4471", "door"]
    assert "keyword #1" in top.find_element(By.CLASS_NAME, "meta").text
    assert "mode=keyword" in browser.current_url
    browser.get(hybrid_url + "/?q=" + "图书馆" + "&mode=hybrid")  # a shared link keeps its mode
    settled(browser)
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
    settled(browser)
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


def _search(browser: webdriver.Chrome, query: str) -> None:
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys(query)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def test_the_best_sentence_is_marked_with_the_hit_count_and_server_time(
    worker_url: str, browser: webdriver.Chrome
) -> None:
    from api.client import SemsearchClient

    text = "Dogs bark at night. The cat sat on the mat. Birds fly south in the winter."
    with SemsearchClient(worker_url) as client:
        assert client.put_document("story", text, title="Story", wait=True).indexed
    browser.get(worker_url + "/")
    _search(browser, "the cat sat on the mat")
    # Hits show at once with the sentence sharing most words marked, then the model's choice replaces it.
    settled(browser)
    story = next(h for h in browser.find_elements(By.CSS_SELECTOR, ".hit") if "Story" in h.text)
    # Only the sentence closest to the query is shaded, not the whole chunk.
    assert story.find_element(By.CSS_SELECTOR, ".snippet .best").text == "The cat sat on the mat."
    assert "Dogs bark at night." in story.find_element(By.CLASS_NAME, "snippet").text
    assert re.fullmatch(r"4 hits in \d+\.\d ms", browser.find_element(By.ID, "summary").text)
    assert not browser.find_element(By.ID, "pager").is_displayed()  # 4 hits: one page
    # The passage in its document, on demand.
    story.find_element(By.TAG_NAME, "summary").click()
    WebDriverWait(browser, 30).until(lambda d: story.find_elements(By.CSS_SELECTOR, ".context .chunk"))
    assert story.find_element(By.CSS_SELECTOR, ".context .chunk").text == text


def test_results_are_paged(loaded: tuple[str, object], browser: webdriver.Chrome) -> None:
    url, _ = loaded
    browser.get(url + "/")
    _search(browser, "cat dog gene")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "page-info").text)
    info = browser.find_element(By.ID, "page-info")
    assert info.text == "1–10 of 100" and browser.find_element(By.ID, "prev").get_property("disabled")
    assert re.fullmatch(r"the 100 best hits in \d+\.\d ms", browser.find_element(By.ID, "summary").text)

    def ids() -> list[str]:
        return [
            h.find_element(By.CLASS_NAME, "meta").text.split(" · ")[0]
            for h in browser.find_elements(By.CSS_SELECTOR, ".hit")
        ]

    settled(browser)
    first = ids()
    browser.find_element(By.ID, "next").click()
    WebDriverWait(browser, 30).until(lambda d: info.text == "11–20 of 100")
    settled(browser)
    second = ids()
    assert len(first) == len(second) == 10 and not set(first) & set(second)
    for _ in range(8):
        browser.find_element(By.ID, "next").click()
    WebDriverWait(browser, 30).until(lambda d: info.text == "91–100 of 100")
    assert browser.find_element(By.ID, "next").get_property("disabled")
    browser.find_element(By.ID, "prev").click()
    WebDriverWait(browser, 30).until(lambda d: info.text == "81–90 of 100")


def test_matched_terms_are_marked_inside_and_around_the_best_sentence(base_url: str, browser: webdriver.Chrome) -> None:
    # The page's renderer driven directly, with a text that has a term in the best sentence and outside it.
    browser.get(base_url + "/")
    terms = browser.execute_script(
        """
        const hit = {id: "d", title: "T", score: 0.5, start: 0, end: 38, text: "A cat sat. The Cat-flap; cats sat.",
                     matched_terms: ["cat", "sat"]};
        document.getElementById("results").replaceChildren(render(hit, [11, 34], null));
        return [...document.querySelectorAll(".snippet mark")].map(m => [m.textContent, !!m.closest(".best")]);
        """
    )
    # Whole words only ("cats" is not "cat"), whatever the case, inside and outside the shaded sentence.
    assert terms == [["cat", False], ["sat", False], ["Cat", True], ["sat", True]]


def test_an_error_without_json_shows_its_text(overloaded, browser: webdriver.Chrome) -> None:
    front, url = overloaded
    browser.get(url + "/")
    front.failures, front.plain, front.path = 1, "upstream is restarting", "/search"
    _search(browser, "cat")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "status").text)
    assert browser.find_element(By.ID, "status").text == "Error 503 Service Unavailable: upstream is restarting"
    assert browser.find_elements(By.CSS_SELECTOR, ".hit") == []
    # The next search goes through, and the message is gone.
    _search(browser, "the cat sat on the mat")
    settled(browser)
    assert browser.find_element(By.ID, "status").text == ""


def _encoder_rows(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=30).text
    return float(re.search(r"^semsearch_encoder_batch_rows_sum (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]


def test_shading_a_page_costs_a_bounded_number_of_encoder_rows(worker_url: str, browser: webdriver.Chrome) -> None:
    from api.client import SemsearchClient

    # 25 short sentences in one chunk, one of them the query: the model weighs 3 of them, not 25.
    words = [
        "Rain",
        "Snow",
        "Wind",
        "Hail",
        "Fog",
        "Mist",
        "Sleet",
        "Frost",
        "Dew",
        "Ice",
        "Cloud",
        "Storm",
        "Thunder",
        "Sun",
        "Heat",
        "Cold",
    ]
    filler = [f"{word} falls." for word in [*words, *words][:24]]
    text = " ".join([*filler[:12], "The cat sat on the mat.", *filler[12:]])
    with SemsearchClient(worker_url) as client:
        assert client.put_document("long", text, title="Long", wait=True).indexed
        hits = len(client.search("the cat sat on the mat", top_k=100).results)
    browser.get(worker_url + "/")
    before = _encoder_rows(worker_url)
    _search(browser, "the cat sat on the mat")
    settled(browser)
    long = next(h for h in browser.find_elements(By.CSS_SELECTOR, ".hit") if "Long" in h.text)
    assert long.find_element(By.CSS_SELECTOR, ".snippet .best").text == "The cat sat on the mat."
    assert "Rain falls." in long.text and "Cold falls." in long.text  # the whole chunk is shown
    # The search's query, then the shading: the query again and at most 3 sentences per hit shown.
    shown = min(hits, 10)
    assert _encoder_rows(worker_url) - before <= 1 + 1 + 3 * shown


def test_facet_links_filter_and_the_sort_selector_orders(hybrid_url: str, browser: webdriver.Chrome) -> None:
    browser.get(hybrid_url + "/")
    browser.find_element(By.ID, "fields").send_keys("kind")
    Select(browser.find_element(By.ID, "sort")).select_by_value("-kind")  # offered once the field is typed
    _search(browser, "gene")
    settled(browser)
    links = browser.find_elements(By.CSS_SELECTOR, "#facets a.facet")
    assert [a.text for a in links] == ["loud (30)", "quiet (12)", "part (1)", "zh (1)"]
    # kind descending: zh, the quiet ones, part, then the loud ones.
    shown = [
        h.find_element(By.CLASS_NAME, "meta").text.split(" · ")[0]
        for h in browser.find_elements(By.CSS_SELECTOR, ".hit")
    ]
    assert shown[0] == "zh" and all(i.startswith("quiet") for i in shown[1:10])
    assert "sort=-kind" in browser.current_url and "fields=kind" in browser.current_url
    links[1].click()  # quiet: added to the filter, searched again
    # The facet links are redrawn by the new answer: a link read as it is replaced is read again.
    WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: [a.text for a in d.find_elements(By.CSS_SELECTOR, "#facets a.facet")] == ["quiet (12)"]
    )
    assert browser.find_element(By.ID, "filter").get_property("value") == '{"kind":"quiet"}'
    settled(browser)
    assert browser.find_element(By.ID, "page-info").text == "1–10 of 12"


def _index(settings: Settings, docs: list[tuple[str, str, str]]) -> None:
    """Index (id, text, title) documents into the settings' collection, as `semsearch index` does."""
    from indexer.write.pipeline import open_indexer
    from search.storage.records import DocumentIn

    indexer = open_indexer(settings)
    indexer.run([DocumentIn(doc_id, text, title) for doc_id, text, title in docs])
    indexer.store.close()


def test_the_collection_selector_searches_the_chosen_collection(
    settings: Settings, start_server: Callable[[FastAPI], str], browser: webdriver.Chrome
) -> None:
    from api.server.app import create_app
    from search.collections import catalog
    from search.collections.spec import CollectionSettings
    from search.components import migrate, open_store

    migrate(settings)
    deployment = open_store(settings)
    other, _ = catalog.create(settings, deployment, "recipes", CollectionSettings())
    deployment.close()
    _index(settings, [("pets", "the cat sat on the mat", "Pets")])
    _index(other, [("soup", "a cat-shaped bowl of tomato soup", "Soup")])
    base = start_server(create_app(settings))

    browser.get(base + "/")
    chooser = Select(browser.find_element(By.ID, "collection"))
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "collection").is_displayed())
    assert [o.text for o in chooser.options] == ["default", "recipes"]
    browser.find_element(By.ID, "q").send_keys("cat")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    settled(browser)
    assert [h.find_element(By.TAG_NAME, "h3").text for h in browser.find_elements(By.CSS_SELECTOR, ".hit")] == ["Pets"]
    chooser.select_by_visible_text("recipes")  # searches again, in the chosen collection
    WebDriverWait(browser, 30).until(lambda d: "collection=recipes" in d.current_url)
    settled(browser)
    assert [h.find_element(By.TAG_NAME, "h3").text for h in browser.find_elements(By.CSS_SELECTOR, ".hit")] == ["Soup"]
    browser.get(browser.current_url)  # the URL keeps the collection
    settled(browser)
    assert Select(browser.find_element(By.ID, "collection")).first_selected_option.text == "recipes"
    assert [h.find_element(By.TAG_NAME, "h3").text for h in browser.find_elements(By.CSS_SELECTOR, ".hit")] == ["Soup"]
