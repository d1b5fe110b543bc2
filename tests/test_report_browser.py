"""The report in a real browser: headless Chromium loads every image, logs no console error.

Skipped, with the reason, where Chromium or chromedriver is absent (the README's test
command never installs system packages; CI installs Debian's chromium and chromium-driver).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_evaluation import fake_models, make_workspace

from dleem.evaluation.evaluate import EvalOptions
from dleem.evaluation.pipeline import evaluate_workspace

CHROMEDRIVER_PATHS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def _find_browser() -> tuple[str | None, str | None, str]:
    driver = next((p for p in CHROMEDRIVER_PATHS if os.access(p, os.X_OK)), None)
    driver = driver or shutil.which("chromedriver")
    browser = next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    if driver is None or browser is None:
        missing = " and ".join(n for n, v in (("chromium", browser), ("chromedriver", driver))
                               if v is None)
        return None, None, (f"{missing} not installed (Debian: apt-get install chromium "
                            "chromium-driver); the report's browser test needs them")
    return browser, driver, ""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    ws = make_workspace(root)
    return evaluate_workspace(ws, fake_models(),
                              EvalOptions(tiles=10, tile_size=64, seed=2, gallery=2,
                                          thickness_tiles=3),
                              use_truth=False, command="dleem evaluate ws --model model-sharp")


def test_report_is_self_contained(report):
    from html.parser import HTMLParser

    refs: list[str] = []

    class Refs(HTMLParser):
        def handle_starttag(self, tag, attrs):
            for key, value in attrs:
                if key in ("src", "href") and value is not None:
                    refs.append(value)

    Refs().feed(report.read_text(encoding="utf-8"))
    assert any(r.endswith(".png") for r in refs) and "report.css" in refs
    folder = report.parent.resolve()
    for ref in refs:
        if ref.startswith("#"):
            continue
        assert "://" not in ref and not ref.startswith("//"), ref
        target = (folder / ref).resolve()
        assert folder in target.parents, f"{ref} points outside the report folder"
        assert target.is_file(), f"{ref} missing"
    css = (report.parent / "report.css").read_text()
    assert "url(" not in css and "@import" not in css


def test_report_in_headless_chromium(report, tmp_path):
    browser, driver_path, reason = _find_browser()
    if driver_path is None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2400"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        drv.set_page_load_timeout(60)
        drv.get(report.resolve().as_uri())
        n_images = drv.execute_script("return document.images.length")
        broken = drv.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.getAttribute('src'))")
        assert n_images >= 8
        assert broken == [], f"images that did not load: {broken}"
        css_ok = drv.execute_script(
            "return getComputedStyle(document.querySelector('header')).backgroundColor")
        assert css_ok not in ("", "rgba(0, 0, 0, 0)"), "report.css did not apply"
        errors = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == [], f"console errors: {errors}"
        shot = tmp_path / "report.png"
        assert drv.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        drv.quit()
