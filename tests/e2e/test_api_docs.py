"""The API reference at /api/docs in a real browser: Swagger UI from the server's own
files renders every operation under the app's Content-Security-Policy, and the page
asks nothing of any other host."""

from __future__ import annotations

from urllib.parse import urlsplit

from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.conftest import RunningService, screenshot, wait_for


def test_the_api_docs_render_from_local_files_under_the_csp(
    service: RunningService, browsers
) -> None:
    window = browsers()
    # Every CSP refusal on the page is recorded, from before its first script runs.
    window.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.cspViolations = [];"
            "document.addEventListener('securitypolicyviolation', e =>"
            " window.cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"
        },
    )
    window.get(f"{service.base}/api/docs")
    wait_for(window, ".swagger-ui .info .title")
    WebDriverWait(window, 30).until(
        lambda w: w.execute_script("return document.querySelectorAll('.opblock').length") > 10
    )
    title = window.execute_script("return document.querySelector('.info .title').innerText")
    assert title.startswith("Watchkeeper")
    paths = window.execute_script(
        "return [...document.querySelectorAll('.opblock-summary-path')].map(e => e.innerText)"
    )
    assert "/api/incidents" in {path.replace("\u200b", "") for path in paths}
    loaded = window.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded, "the page loaded its script and styles"
    own = urlsplit(service.base).netloc
    assert {urlsplit(url).netloc for url in loaded} == {own}, loaded
    assert window.execute_script("return window.cspViolations") == []
    screenshot(window, "api-docs")
