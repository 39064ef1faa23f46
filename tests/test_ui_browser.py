"""``agentsession ui`` in a real browser: Debian's Chromium, headless, driven by Selenium.

The browser opens the printed address (with the token), lists, searches, opens a
transcript with tool calls and hostile content, and (with ``--allow-writes``) rewinds and
forks, each answered at its confirmation; the store is checked afterwards. Chromium and
its driver come from Debian (``.ci/run`` installs them); without them the tests are
skipped with the reason, and fail where ``AGENTSESSION_REQUIRE_SERVICES`` is set (CI).

With ``AGENTSESSION_UI_SCREENSHOTS=DIR`` the tests save the screenshots ``docs/ui.md``
shows into DIR.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentsession import SQLiteStore
from tests.ui_support import (
    HOSTILE_ID,
    hostile_conversation,
    running_ui,
    weather_conversation,
)

pytestmark = pytest.mark.timeout(120)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = os.environ.get("AGENTSESSION_UI_SCREENSHOTS")
WAIT = 10  # seconds any one page or element may take


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        reason = "no chromium / chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("AGENTSESSION_REQUIRE_SERVICES"):
            pytest.fail(f"{reason}; AGENTSESSION_REQUIRE_SERVICES is set, so this fails")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "sessions.db") as store:
        for n in range(1, 6):
            store.add_messages(f"support-{n}", [{"role": "user", "content": f"ticket {n}"}])
            store.set_metadata(f"support-{n}", {"user": "bob", "channel": "email"})
        store.add_messages(HOSTILE_ID, hostile_conversation())
        store.set_metadata(HOSTILE_ID, {"note": "<i>not italic</i>"})
        store.add_messages("weather-paris", weather_conversation())
        store.set_metadata("weather-paris", {"user": "alice", "title": "Trip to Paris"})
        yield store


def _shot(driver: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(SCREENSHOTS) / f"ui-{name}.png"))


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _no_script_ran(driver: Any) -> None:
    assert driver.execute_script("return window.__pwned === undefined") is True


def _confirm(driver: Any, accept: bool) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    alert = WebDriverWait(driver, WAIT).until(lambda d: d.switch_to.alert)
    text = str(alert.text)
    alert.accept() if accept else alert.dismiss()
    return text


def _wait_text(driver: Any, selector: str, predicate: Any) -> str:
    """The text of ``selector`` once ``predicate(text)`` holds (after a form's page loads).

    An element found on the page being left goes stale when the new one replaces it:
    that try is retried, as a missing element is.
    """
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d: Any) -> str | None:
        found = _css(d, selector)
        return found[0].text if found and predicate(found[0].text) else None

    waiting = WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))
    return str(waiting.until(ready))


def _wait_all(driver: Any, selector: str) -> list[Any]:
    """Every element matching ``selector`` once there is one (after a form's page loads:
    sending Enter to a form does not wait for the page it submits to)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    waiting = WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))
    return list(waiting.until(lambda d: _css(d, selector) or None))


def test_browse_search_and_read_a_transcript(browser: Any, store: SQLiteStore) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with running_ui(store) as ui:
        browser.get(ui.url)
        # The token became a cookie and left the address.
        assert browser.current_url == ui.base
        links = [a.text for a in _css(browser, "a.session-link")]
        assert links[:2] == ["weather-paris", HOSTILE_ID]  # shown as text, newest first
        assert "read-only" in browser.find_element(By.CSS_SELECTOR, ".mode").text
        _no_script_ran(browser)
        _shot(browser, "sessions")

        box = browser.find_element(By.NAME, "q")
        box.send_keys("sunny Paris", Keys.ENTER)
        marks = [m.text.lower() for m in _wait_all(browser, ".snippet mark")]
        assert "sunny" in marks and "paris" in marks
        _shot(browser, "search")
        browser.find_element(By.CSS_SELECTOR, ".hit a").click()
        assert "/session?id=weather-paris" in browser.current_url
        position = browser.current_url.rpartition("#m")[2]
        target = browser.find_element(By.ID, f"m{position}")
        assert "sunny in Paris" in target.text or "Sunny" in target.text

        call = browser.find_element(By.CSS_SELECTOR, "article.tool")
        assert "get_weather" in call.text
        assert '"city": "Paris"' in call.find_element(By.CSS_SELECTOR, ".arguments").text
        assert call.find_element(By.CSS_SELECTOR, ".output").text.endswith("Sunny, 22 °C")
        handoff = browser.find_element(By.CSS_SELECTOR, "article.handoff")
        assert "booking_agent" in handoff.text
        reasoning = browser.find_element(By.CSS_SELECTOR, "details.reasoning")
        assert reasoning.get_attribute("open") is None  # collapsed
        assert not browser.find_element(By.CSS_SELECTOR, "details.reasoning .text").is_displayed()
        _shot(browser, "session")

        browser.get(ui.base)
        browser.find_element(By.LINK_TEXT, HOSTILE_ID).click()
        assert browser.find_element(By.CSS_SELECTOR, "h1").text == HOSTILE_ID
        texts = [e.text for e in _css(browser, "article .text")]
        assert any("<script>window.__pwned = 1</script>" in t for t in texts)
        assert "<b>tool</b>" in browser.find_element(By.CSS_SELECTOR, ".tool-name").text
        assert "<i>not italic</i>" in browser.find_element(By.CSS_SELECTOR, "pre.metadata").text
        _no_script_ran(browser)


def test_rewind_and_fork_ask_first_and_change_the_store(browser: Any, store: SQLiteStore) -> None:
    from selenium.webdriver.common.by import By

    with running_ui(store, allow_writes=True) as ui:
        browser.get(ui.url)
        browser.find_element(By.LINK_TEXT, "weather-paris").click()
        _shot(browser, "session-writes")

        browser.find_element(By.ID, "rewind").click()
        assert "last turn" in _confirm(browser, accept=False)
        assert store.message_count("weather-paris") == 7  # said no: nothing changed

        fork = browser.find_element(By.CSS_SELECTOR, "form[action='/fork']")
        name = fork.find_element(By.NAME, "new_id")
        name.clear()
        name.send_keys("paris-copy")
        fork.find_element(By.NAME, "at").send_keys("4")
        browser.find_element(By.ID, "fork").click()
        _confirm(browser, accept=True)
        _wait_text(browser, "h1", lambda text: text == "paris-copy")
        assert store.get_messages("paris-copy") == weather_conversation()[:4]
        assert store.session_info("paris-copy").metadata["title"] == "Trip to Paris"

        browser.get(ui.base + "session?id=weather-paris")
        browser.find_element(By.ID, "rewind").click()
        _confirm(browser, accept=True)
        _wait_text(browser, ".facts", lambda text: text.startswith("0 messages"))
        assert store.message_count("weather-paris") == 0
        assert store.message_count("paris-copy") == 4
