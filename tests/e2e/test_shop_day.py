"""The issue's whole story in a real browser against a real `watchkeeper serve`:
a reporter records an incident and proposes Joe Biden with his LFW photos, a
manager approves, an admin adds the debate clip as a camera, the alert appears on
a reviewer's open page while the clip plays, two reviewers confirm, and the audit
log shows every step. Screenshots of the main pages go to ``test-artifacts/``."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.e2e.conftest import RunningService, screenshot, sign_in, wait_for
from tests.support.data import DEBATE, lfw_photos
from tests.support.shop import TWO_FACE_PHOTOS

BIDEN_PHOTOS = [p for p in lfw_photos("Joseph_Biden") if p.name not in TWO_FACE_PHOTOS][:3]


def submit(window: WebDriver, form_css: str, button_text: str | None = None) -> None:
    """Press a form's submit button (the one labelled ``button_text``, if given)."""
    buttons = window.find_elements(By.CSS_SELECTOR, f"{form_css} button[type=submit]")
    chosen = [b for b in buttons if button_text is None or b.text.startswith(button_text)]
    assert chosen, f"no button {button_text!r} in {form_css}"
    chosen[0].click()


def text_of(window: WebDriver) -> str:
    """The page's main text, read in one step (a page being replaced reads as empty
    rather than failing with a stale element)."""
    return read(window, "main")


def read(window: WebDriver, css: str) -> str:
    """The text of the first element matching ``css`` now ('' if there is none)."""
    script = "return document.querySelector(arguments[0])?.innerText ?? ''"
    return window.execute_script(script, css)


def record_incident(window: WebDriver, base: str) -> None:
    window.get(f"{base}/incidents/new")
    Select(window.find_element(By.NAME, "site")).select_by_visible_text("Leeds")
    Select(window.find_element(By.NAME, "category")).select_by_value("theft")
    window.find_element(By.NAME, "description").send_keys(
        "Took six bottles of whisky from the aisle by the door and left without paying."
    )
    window.find_element(By.NAME, "police_reference").send_keys("13/123456/26")
    submit(window, "form[action='/incidents']")
    WebDriverWait(window, 15).until(lambda w: w.current_url.endswith("/incidents"))
    assert "whisky" in text_of(window)


def propose_biden(window: WebDriver, base: str) -> str:
    window.get(f"{base}/watchlist/new")
    window.find_element(By.NAME, "label").send_keys("Joseph_Biden")
    window.find_element(By.NAME, "reason").send_keys("Repeat theft of spirits, seen on CCTV")
    window.find_element(By.CSS_SELECTOR, "input[name=incidents]").click()
    window.find_element(By.NAME, "photos").send_keys("\n".join(map(str, BIDEN_PHOTOS)))
    window.find_element(By.NAME, "attest").click()
    submit(window, "form#enrol")
    WebDriverWait(window, 60).until(
        lambda w: "/watchlist/" in w.current_url and not w.current_url.endswith("/new")
    )
    page = text_of(window)
    assert "pending" in page
    return window.current_url


def add_debate_camera(window: WebDriver, base: str) -> None:
    window.get(f"{base}/cameras")
    Select(window.find_element(By.NAME, "site")).select_by_visible_text("Leeds")
    window.find_element(By.NAME, "name").send_keys("till")
    window.find_element(By.NAME, "source").send_keys(str(DEBATE))
    submit(window, "form[action='/cameras']", "Test connection")
    WebDriverWait(window, 20).until(lambda w: "640" in text_of(w))
    submit(window, "form[action='/cameras']", "Add camera")
    WebDriverWait(window, 20).until(lambda w: "Leeds/till" in text_of(w) or "till" in text_of(w))


def review(window: WebDriver, decision: str, note: str) -> None:
    window.find_element(By.CSS_SELECTOR, f"input[name=decision][value={decision}]").click()
    window.find_element(By.NAME, "note").send_keys(note)
    submit(window, "form.review")


def test_a_day_at_the_shop_in_a_browser(service: RunningService, browsers) -> None:
    base = service.base
    reviewer, second_reviewer, reporter, manager, admin, auditor = (browsers() for _ in range(6))

    # The reviewer keeps the alerts page open all along, as on the shop's screen.
    sign_in(reviewer, base, "dave", "/alerts")
    wait_for(reviewer, "#alerts")
    WebDriverWait(reviewer, 15).until(lambda w: read(w, "#live-state").startswith("Live"))

    sign_in(reporter, base, "bob")
    record_incident(reporter, base)
    screenshot(reporter, "incidents")
    entry_url = propose_biden(reporter, base)
    screenshot(reporter, "watchlist-entry-proposed")
    assert not reporter.find_elements(By.CSS_SELECTOR, "form[action$='/approve']"), (
        "the proposer is offered no approval"
    )

    sign_in(manager, base, "carol")
    manager.get(entry_url)
    submit(manager, "form[action$='/approve']")
    WebDriverWait(manager, 15).until(lambda w: "active" in text_of(w))
    screenshot(manager, "watchlist-entry-approved")
    manager.get(f"{base}/watchlist")
    screenshot(manager, "watchlist")

    sign_in(admin, base, "alice")
    add_debate_camera(admin, base)

    row = WebDriverWait(reviewer, 180, poll_frequency=0.5).until(
        lambda w: w.find_elements(By.CSS_SELECTOR, "#alerts tr.new-alert")
    )[0]
    assert "Joseph_Biden" in row.text
    assert "Leeds/till" in row.text
    screenshot(reviewer, "alerts-live")
    admin.get(f"{base}/cameras")
    screenshot(admin, "cameras")
    row.find_element(By.TAG_NAME, "a").click()
    wait_for(reviewer, "form.review")
    card = text_of(reviewer)
    assert "Whisky".lower() in card.lower(), "the card shows the incident"
    assert "Before you decide" in card
    images = reviewer.find_elements(By.CSS_SELECTOR, "section.faces img")
    assert len(images) == 1 + len(BIDEN_PHOTOS), "the crop beside every enrolment photo"
    for image in images:
        assert reviewer.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", image
        ), f"{image.get_attribute('src')} did not load"
    screenshot(reviewer, "alert-card")
    card_url = reviewer.current_url
    review(reviewer, "confirm", "Same face as the enrolment photos")
    WebDriverWait(reviewer, 15).until(lambda w: "Confirmed so far by dave" in text_of(w))
    assert "pending" in read(reviewer, "h1")

    sign_in(second_reviewer, base, "erin")
    second_reviewer.get(card_url)
    review(second_reviewer, "confirm", "Agree: same person")
    WebDriverWait(second_reviewer, 15).until(lambda w: "confirmed" in read(w, "h1"))
    screenshot(second_reviewer, "alert-confirmed")

    sign_in(auditor, base, "frank")
    auditor.get(f"{base}/audit")
    wait_for(auditor, "table.audit")
    assert "Chain intact" in text_of(auditor)
    actions = [
        cell.text
        for cell in auditor.find_elements(By.CSS_SELECTOR, "table.audit tbody td:nth-child(4)")
    ]
    for step in (
        "user.sign-in",
        "incident.create",
        "subject.enrol",
        "subject.approve",
        "camera.create",
        "alert.create",
        "alert.snapshot",
        "alert.review",
    ):
        assert step in actions, f"{step} is not in the audit log: {actions}"
    assert actions.count("alert.review") == 2
    screenshot(auditor, "audit-log")
    auditor.get(f"{base}/transparency")
    wait_for(auditor, "main h1")
    screenshot(auditor, "transparency")
