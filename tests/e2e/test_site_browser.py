"""The catalogue site in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`, which
.ci/run installs) driven by Selenium, over the site served by the tests' loopback static server. Search by a
word of a description, open the page, check what it shows, follow a dependency, filter by base model; a card
holding script stays inert; everything but live search works with JavaScript off; nothing overflows a phone.
Without Chromium or its driver these tests fail (they do not skip)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapterhub_client.site import build_site
from tests.httpserver import StaticServer
from tests.unit.test_site import BERT, MINILM, MINILM_FP, catalogue_registry

WAIT = 15  # seconds a page may take to show what a test waits for (a loaded 2-core CI machine)
PNG = b"\x89PNG\r\n\x1a\n"


def _chrome() -> Any:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not chromedriver:
        pytest.fail(
            "the site's browser tests need Chromium and its driver: apt-get install chromium chromium-driver "
            f"(found chromium={chromium}, chromedriver={chromedriver}; .ci/run installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(arg)
    options.binary_location = chromium
    return webdriver.Chrome(options=options, service=Service(chromedriver))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = _chrome()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticServer]:
    """tests/unit/test_site.py's catalogue registry with its site, served over loopback HTTP."""
    work = tmp_path_factory.mktemp("site-browser")
    root = catalogue_registry(work / "registry", work / "packages")
    assert build_site(root).ok
    with StaticServer(root) as server:
        yield server


def _wait(driver: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(condition)


def _results(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#results .entry-head a")]


def _shows(driver: Any, names: list[str]) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return _results(driver) == names
    except StaleElementReferenceException:  # the list was re-rendered while it was read
        return False


def test_search_open_check_and_follow_a_dependency(browser: Any, served: StaticServer, tmp_path: Path, cli):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    browser.get(f"{served.url}/site/index.html")
    box = _wait(browser, ec.visibility_of_element_located((By.ID, "q")))
    box.send_keys("polarity")  # in acme/sentiment's description only, not in any name
    _wait(browser, lambda d: _shows(d, ["acme/sentiment"]))
    assert browser.find_element(By.ID, "search-status").text == "Showing 1 of 1 adapter."
    assert not browser.find_element(By.ID, "browse").is_displayed()
    browser.save_screenshot(str(tmp_path / "home.png"))

    box.send_keys(Keys.ARROW_DOWN)  # keyboard: into the results, then open one
    focused = browser.switch_to.active_element
    assert focused.text == "acme/sentiment"
    focused.send_keys(Keys.ENTER)
    _wait(browser, ec.url_to_be(f"{served.url}/site/adapters/acme/sentiment.html"))

    install = browser.find_element(By.CSS_SELECTOR, 'pre[data-copy="install command"]')
    assert install.text == "adapters install acme/sentiment@1.1.0"
    add = browser.find_element(By.CSS_SELECTOR, 'pre[data-copy="registry command"]')
    assert add.text == f"adapters registry add team {served.url}/"  # the served address, filled in
    assert not browser.find_element(By.CSS_SELECTOR, "[data-registry-hint]").is_displayed()
    rows = browser.find_elements(By.CSS_SELECTOR, "#versions ~ .table-wrap tbody tr")
    assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == ["1.1.0", "1.0.0"]
    assert "yanked" in rows[1].get_attribute("class") and "yanked" in rows[1].text and "yanked" not in rows[0].text
    assert browser.find_element(By.CSS_SELECTOR, "code.fingerprint").text == MINILM_FP
    browser.save_screenshot(str(tmp_path / "adapter.png"))
    for shot in ("home.png", "adapter.png"):
        assert (tmp_path / shot).read_bytes()[:8] == PNG and (tmp_path / shot).stat().st_size > 10_000

    # the lines copied from the page install from the served registry, dependency included
    assert cli(*add.text.split()[1:]).code == 0
    r = cli(*install.text.split()[1:], "--json")
    assert r.code == 0, r.err
    assert sorted((i["name"], i["version"]) for i in r.json()["installed"]) == [
        ("acme/helper", "1.0.0"), ("acme/sentiment", "1.1.0"),
    ]  # fmt: skip

    browser.find_element(By.LINK_TEXT, "acme/helper").click()
    _wait(browser, ec.url_to_be(f"{served.url}/site/adapters/acme/helper.html"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "acme/helper"


def test_filter_by_base_model_and_type_with_a_query(browser: Any, served: StaticServer):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select

    browser.get(f"{served.url}/site/index.html")
    box = _wait(browser, ec.visibility_of_element_located((By.ID, "q")))
    Select(browser.find_element(By.ID, "base")).select_by_value(BERT)
    _wait(browser, lambda d: _shows(d, ["bert/ner", "acme/style"]))  # in publish order
    bases = browser.find_elements(By.CSS_SELECTOR, "#results li p.muted")
    assert [b.text for b in bases] == [f"base model: {BERT}"] * 2
    box.send_keys("formal")
    _wait(browser, lambda d: _shows(d, ["acme/style"]))
    Select(browser.find_element(By.ID, "base")).select_by_value(MINILM)
    _wait(browser, lambda d: browser.find_element(By.ID, "search-status").text == "No adapter matches.")
    box.clear()
    Select(browser.find_element(By.ID, "type")).select_by_value("lora")
    _wait(browser, lambda d: _shows(d, ["acme/helper", "acme/sentiment", "evil/card"]))

    # the search is in the address: reloading it (or sharing the link) shows the same results
    assert "base=" in browser.current_url and "type=lora" in browser.current_url
    browser.get(browser.current_url)
    _wait(browser, lambda d: _shows(d, ["acme/helper", "acme/sentiment", "evil/card"]))
    assert Select(browser.find_element(By.ID, "base")).first_selected_option.get_attribute("value") == MINILM


def test_a_card_holding_script_and_javascript_links_is_inert(browser: Any, served: StaticServer):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    page = f"{served.url}/site/adapters/evil/card.html"
    browser.get(page)
    card = browser.find_element(By.CSS_SELECTOR, ".card")
    assert "<script>alert('card script')</script>" in card.text  # shown, not run
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018 - reading it is the check
    assert card.find_elements(By.TAG_NAME, "script") == [] and card.find_elements(By.TAG_NAME, "img") == []
    assert [a.get_attribute("href") for a in card.find_elements(By.TAG_NAME, "a")] == ["https://example.org/docs"]
    handlers = "return document.querySelectorAll('[onerror],[onclick],[onload],iframe,object,embed').length"
    assert browser.execute_script(handlers) == 0
    text = card.find_element(By.XPATH, ".//p[contains(., 'click me')]")
    text.click()  # where the javascript: link was written: plain text, nothing to follow
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018
    assert browser.current_url == page


def test_without_javascript_every_page_but_live_search_works(browser: Any, served: StaticServer):
    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.get(f"{served.url}/site/index.html")
        assert not browser.find_element(By.ID, "search").is_displayed()
        assert "Live search needs JavaScript" in browser.find_element(By.TAG_NAME, "main").text
        browser.find_element(By.LINK_TEXT, MINILM).click()
        names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, ".entries .entry-head a")]
        assert names == ["acme/helper", "acme/sentiment", "evil/card"]
        browser.find_element(By.LINK_TEXT, "acme/sentiment").click()
        assert browser.find_element(By.CSS_SELECTOR, 'pre[data-copy="install command"]').text == (
            "adapters install acme/sentiment@1.1.0"
        )
        assert browser.find_element(By.CSS_SELECTOR, "[data-registry-hint]").is_displayed()
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_pages_fit_a_phone_width(browser: Any, served: StaticServer):
    browser.set_window_size(390, 844)
    try:
        for path in ("index.html", "adapters/acme/sentiment.html", "all/index.html"):
            browser.get(f"{served.url}/site/{path}")
            overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a phone"
    finally:
        browser.set_window_size(1200, 900)
