"""The monitoring page at ``/``, read in real headless Chromium from a real server.

Chromium and its driver are Debian's ``chromium`` and ``chromium-driver`` (one build, so they
always match). Every host name but loopback fails to resolve in this browser: a page that
needed a CDN would break here as it would on an air-gapped cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait
from sklearn.base import clone

import modelfleet as mf
from modelfleet.build.wheels import modelfleet_wheel
from modelfleet.registry import Registry
from modelfleet.serving.auth import hash_token
from modelfleet.serving.live import monitor_page
from modelfleet.serving.settings import (
    ModelConfig,
    MonitoringConfig,
    ServeConfig,
    TokenConfig,
    WatchConfig,
)
from tests.conftest import make_settings
from tests.models import logistic_pipeline, sum_graph
from tests.serving.conftest import RunningServer, run_server

Served = Callable[..., RunningServer]
EVIL = '<img src=x onerror="document.body.dataset.injected=1">'
ACCENT = (0x24, 0x63, 0xEB)  # the page's bars and sparklines


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin")
    if found is None:
        raise RuntimeError(
            f"{name} not found; run 'make test' (it installs Debian's chromium and chromium-driver)"
        )
    return found


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the module; each test opens its own server's origin."""
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium")
    args = [
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
        "--window-size=1280,900",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    for arg in args:
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(_binary("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


T = TypeVar("T")


def _until(driver: WebDriver, check: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` and the page."""

    def probe(_: WebDriver) -> Any:
        try:
            return check()
        except (NoSuchElementException, StaleElementReferenceException):
            return False  # not drawn yet, or redrawn while being read

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(probe)
    except TimeoutException as exc:
        shown = driver.find_elements(By.ID, "status")
        status = shown[0].text if shown else driver.page_source[:300]
        raise AssertionError(f"page never showed {what}; status line: {status!r}") from exc


def _field(driver: WebDriver, model: str, field: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f'[data-model="{model}"] [data-field="{field}"]')


def _settled(read: Callable[[], T]) -> T:
    """``read()`` again when the page redrew the element between finding and reading it."""
    for _ in range(5):
        try:
            return read()
        except StaleElementReferenceException:
            continue
    return read()


def _text(driver: WebDriver, model: str, field: str) -> str:
    return _settled(lambda: str(_field(driver, model, field).text))


def _value(driver: WebDriver, model: str, field: str) -> str:
    return _settled(lambda: str(_field(driver, model, field).get_attribute("data-value")))


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _row(x: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": x.tolist()}]}


def _predict(server: RunningServer, model: str, rows: np.ndarray[Any, Any]) -> list[str]:
    ids = []
    for x in rows:
        response = server.http.post(f"/v2/models/{model}/infer", json=_row(x))
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


def _feedback(server: RunningServer, ids: list[str], labels: list[int]) -> dict[str, Any]:
    response = server.http.post(
        "/v2/models/iris/feedback", json={"request_ids": ids, "labels": labels}
    )
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def _class_counts(driver: WebDriver, model: str) -> dict[str, int]:
    def read() -> dict[str, int]:
        rows = _field(driver, model, "predictions").find_elements(By.CSS_SELECTOR, "[data-class]")
        return {
            str(r.get_attribute("data-class")): int(r.find_element(By.CLASS_NAME, "count").text)
            for r in rows
        }

    return _settled(read)


def test_page_shows_live_figures_and_follows_them(
    registry: Registry, served: Served, browser: WebDriver, tmp_path: Path
) -> None:
    model, X, y = logistic_pipeline()
    order = np.random.default_rng(0).permutation(len(X))
    X, y = X[order], y[order]
    accuracy = model.score(X, y)
    mf.register(
        model,
        name="iris",
        sample_input=X,
        training_data=X,
        metrics={"accuracy": accuracy},
        registry=registry,
    )
    watch = WatchConfig(drift_window_rows=40, drift_min_rows=30, drift_interval_s=0.1)
    server = served(
        ModelConfig(ref="iris", watch=watch), monitoring=MonitoringConfig(summary_window_s=60)
    )
    ids = _predict(server, "iris", X[:10])
    browser.get(f"{server.url}/?interval=0.5")

    _until(browser, lambda: _value(browser, "iris", "requests") == "10", "10 requests")
    assert _text(browser, "iris", "name") == "iris"
    assert _text(browser, "iris", "version") == "1"
    assert _text(browser, "iris", "variant") == "fp32"
    assert _text(browser, "iris", "state") == "ready"
    assert float(_value(browser, "iris", "rps")) > 0
    assert re.fullmatch(r"\d+\.\d+ ms", _text(browser, "iris", "p99_ms"))
    assert _text(browser, "iris", "error_ratio") == "0.0%"
    assert _text(browser, "iris", "cache") == "on"
    assert _text(browser, "iris", "accuracy_live") == "no labels"
    assert _text(browser, "iris", "accuracy_registered") == _pct(accuracy)
    # Classes are counted when the watcher flushes (twice a second), not per request.
    _until(browser, lambda: sum(_class_counts(browser, "iris").values()) == 10, "10 classified")
    assert browser.find_element(By.ID, "server-version").text == f"modelfleet {mf.__version__}"
    assert re.fullmatch(r"up \d\dm \d\ds", browser.find_element(By.ID, "uptime").text)

    first = _feedback(server, ids, [int(v) for v in y[:10]])["live_accuracy"]["value"]
    _until(browser, lambda: _text(browser, "iris", "accuracy_live") == _pct(first), "live accuracy")
    assert _text(browser, "iris", "labelled_requests") == "10"

    # Petal length doubled: the inputs drift, and the model gets many of them wrong.
    shifted = X[10:50].copy()
    shifted[:, 2] *= 2.0
    ids = _predict(server, "iris", shifted)
    second = _feedback(server, ids, [int(v) for v in y[10:50]])["live_accuracy"]["value"]
    assert second < first
    _until(browser, lambda: _value(browser, "iris", "requests") == "50", "50 requests")
    _until(
        browser,
        lambda: _text(browser, "iris", "accuracy_live") == _pct(second),
        "the lower live accuracy",
    )
    _until(browser, lambda: _text(browser, "iris", "drift_feature") == "input[2]", "the drift")
    assert _text(browser, "iris", "labelled_requests") == "50"
    assert float(_value(browser, "iris", "max_psi")) > 0.2
    assert "alert" in str(_field(browser, "iris", "max_psi").get_attribute("class"))
    _until(browser, lambda: sum(_class_counts(browser, "iris").values()) == 50, "50 predictions")

    def drawn(chart: str) -> int:
        svg = browser.find_element(By.CSS_SELECTOR, f'[data-model="iris"] [data-chart="{chart}"]')
        points = svg.find_element(By.TAG_NAME, "polyline").get_attribute("points") or ""
        return len(points.split())

    _until(browser, lambda: drawn("rps") >= 4 and drawn("accuracy") >= 2, "the sparklines")
    assert drawn("psi") >= 1

    shot = tmp_path / "monitor-page.png"
    assert browser.save_screenshot(str(shot))
    width, height = browser.execute_script(
        "return [innerWidth * devicePixelRatio, innerHeight * devicePixelRatio]"
    )
    with Image.open(shot) as image:
        assert image.format == "PNG"
        assert image.size == (width, height)
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 20  # text, cards, bars: not a blank page
    assert any(rgb == ACCENT for _, rgb in colours), "the bars and sparklines are not drawn"


def test_page_is_offline_and_shows_untrusted_names_as_text(
    registry: Registry, served: Served, browser: WebDriver
) -> None:
    model, X, y = logistic_pipeline()
    names = np.array(["setosa", EVIL, "virginica"])
    mf.register(clone(model).fit(X, names[y]), name="flowers", sample_input=X, registry=registry)
    server = served(ModelConfig(ref="flowers"))
    _predict(server, "flowers", X[45:55])  # setosa and versicolor, the class named EVIL

    page = server.http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # The one absolute URL is the SVG namespace, an identifier that is never fetched.
    urls = set(re.findall(r"[a-z]+://[^\s\"'<>)]+", page.text))
    assert urls == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page.text)

    browser.get(server.url)
    _until(browser, lambda: EVIL in _class_counts(browser, "flowers"), "the class label")
    names_shown = browser.find_elements(By.CSS_SELECTOR, '[data-model="flowers"] .class .name')
    assert EVIL in {e.text for e in names_shown}  # printed literally, as a person reads it
    assert browser.find_elements(By.TAG_NAME, "img") == []
    assert browser.execute_script("return document.body.dataset.injected") is None
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources and all(r.startswith(f"{server.url}/") for r in resources)


def test_page_says_when_the_server_is_gone(tmp_path: Path, browser: WebDriver) -> None:
    settings = make_settings(tmp_path / "home")
    with Registry.open(settings) as registry:
        mf.register(sum_graph(), name="adder", registry=registry)
    config = ServeConfig(models=(ModelConfig(ref="adder"),))
    with run_server(config, settings) as server:
        browser.get(f"{server.url}/?interval=0.3")
        _until(browser, lambda: _text(browser, "adder", "state") == "ready", "the adder card")
        assert _text(browser, "adder", "accuracy_live") == "no labels"
    status = browser.find_element(By.ID, "status")
    _until(browser, lambda: status.get_attribute("data-state") == "unreachable", "the outage")
    assert status.text.startswith(f"cannot reach the server at {server.url[7:]}")
    assert "retrying every 0.3 s" in status.text
    # The last figures stay, greyed out, so a person still sees what was there.
    assert "stale" in str(browser.find_element(By.TAG_NAME, "body").get_attribute("class"))
    assert _text(browser, "adder", "state") == "ready"


def test_page_asks_for_a_token_when_the_figures_are_closed(
    registry: Registry, served: Served, browser: WebDriver
) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    token = "mf_page_test_token"
    server = served(
        ModelConfig(ref="adder"),
        tokens=(TokenConfig(name="ops", sha256=hash_token(token), scopes=("infer", "admin")),),
        open_paths=("health", "docs"),
    )
    assert server.http.get("/monitor/summary").status_code == 401
    browser.get(server.url)
    status = browser.find_element(By.ID, "status")
    form = browser.find_element(By.ID, "auth")
    _until(browser, form.is_displayed, "the token form")
    assert status.get_attribute("data-state") == "auth"
    assert "needs a bearer token" in status.text
    assert browser.find_elements(By.CSS_SELECTOR, "[data-model]") == []

    field = browser.find_element(By.ID, "token")
    button = form.find_element(By.TAG_NAME, "button")
    field.send_keys("mf_wrong")
    button.click()
    _until(browser, lambda: "the token was refused" in status.text, "the refusal")
    assert form.is_displayed()

    field.send_keys(token)
    button.click()
    _until(browser, lambda: _text(browser, "adder", "state") == "ready", "the figures")
    assert not form.is_displayed()
    assert status.get_attribute("data-state") == "ok"
    stored = browser.execute_script(
        "return [sessionStorage.getItem('modelfleet.token'), localStorage.length]"
    )
    assert stored == [token, 0]  # this tab only, never written to disk
    assert token not in browser.current_url


def test_installed_wheel_serves_the_same_page(tmp_path: Path) -> None:
    # The image installs modelfleet from this wheel: an asset left out of the package data
    # would break the page only in production.
    wheel = modelfleet_wheel(tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    assets = {f"modelfleet/serving/live/assets/page.{ext}" for ext in ("html", "css", "js")}
    assert assets <= names

    code = "import modelfleet.serving.live.page as p; print(p.__file__); print(p.monitor_page())"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    run = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    where, page = run.stdout.split("\n", 1)
    assert Path(where).is_relative_to(tmp_path / "site")  # the wheel's copy, not the source's
    assert page == monitor_page() + "\n"
