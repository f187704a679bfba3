"""The page in a real browser: Debian's headless Chromium, driven by Selenium through Debian's
chromedriver (nothing downloads a browser), against the real `deepfake-detector serve` command on
a loopback port. It uploads the portrait, waits for the verdict, checks the score shown is the
API's, shows Grad-CAM and a video's frame strip, and saves screenshots.

Skips, saying why, where Chromium is not installed; `make test` installs it first where it can."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import pytest

from projectcopy import project_env

pytestmark = pytest.mark.slow
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no headless Chromium here: install Debian's chromium and chromium-driver "
           "(`make browser` does it as root; `make test` runs it)")
COMMAND = str(Path(sys.executable).parent / "deepfake-detector")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained):
    """`deepfake-detector serve` in the trained project; stopped with Ctrl-C (SIGINT) at the end."""
    port = free_port()
    process = subprocess.Popen([COMMAND, "serve", "--port", str(port)], cwd=trained, env=project_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2) as answer:
                assert json.load(answer)["status"] == "ok"
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"serve did not start: {process.communicate()[1][-2000:]}")
            time.sleep(0.5)
    yield url
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    assert "serving" in err


def api_predict(url: str, path: Path, **fields) -> dict:
    """The API's answer for ``path``, posted as the browser posts it (multipart)."""
    boundary = "----test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/api/predict", body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.load(answer)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1500",
                 "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    yield driver
    driver.quit()


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    """Saved in the test's folder, and in $SCREENSHOT_DIR too when that is set (to look at)."""
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.std() > 1  # a real picture, not blank
    if os.environ.get("SCREENSHOT_DIR"):
        shutil.copy(path, Path(os.environ["SCREENSHOT_DIR"]) / name)
    return path


def upload(driver, path: Path, explain: bool = False):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    box = driver.find_element(By.ID, "explain")
    if box.is_selected() != explain:
        box.click()
    driver.execute_script("document.getElementById('verdict-score').textContent = ''")
    driver.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "verdict-score").text
                                     or "error" in d.find_element(By.ID, "status").get_attribute("class"))
    assert driver.find_element(By.ID, "status").get_attribute("class") != "error", \
        driver.find_element(By.ID, "status").text


@needs_chromium
def test_the_page_shows_the_verdict_and_score_the_api_gives(server, browser, media, trained, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + "/")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "fact-test").text)
    eval_metrics = json.loads((trained / "metrics/eval.json").read_text())
    assert browser.find_element(By.ID, "fact-test").text == f"{eval_metrics['test']['roc_auc']:.4f}"
    assert browser.find_element(By.ID, "fact-model").text.startswith("compact_cnn")
    # #19: a model trained on the generated sample says so before anything is scored
    banner = browser.find_element(By.ID, "model-warning")
    assert banner.is_displayed() and "generated sample" in banner.text, banner.text
    assert browser.find_element(By.ID, "fact-learned").text == "sample"

    upload(browser, media["face"])
    validation = eval_metrics["validation"]
    beside = browser.find_element(By.ID, "verdict-model").text  # the model's own figures, by the verdict
    assert f"ROC-AUC {validation['roc_auc']:.4f}" in beside and "means nothing for a real photo" in beside
    verdict = next(row for row in api_predict(server, media["face"])["rows"] if row["kind"] == "file")
    shown = browser.find_element(By.ID, "verdict-score")
    assert shown.text == f"{verdict['p_fake']:.4f}"
    assert float(shown.get_attribute("data-p-fake")) == verdict["p_fake"]
    assert browser.find_element(By.ID, "verdict-label").text == verdict["label"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#faces tbody tr")) == verdict["faces"]
    screenshot(browser, tmp_path, "serve_image.png")


@needs_chromium
def test_the_page_shows_grad_cam_and_a_video_frame_strip(server, browser, media, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    upload(browser, media["face"], explain=True)
    overlays = browser.find_elements(By.CSS_SELECTOR, "#faces tbody img")
    assert overlays and all(img.get_attribute("naturalWidth") != "0" for img in overlays)
    screenshot(browser, tmp_path, "serve_gradcam.png")

    upload(browser, media["video"])
    verdict = next(row for row in api_predict(server, media["video"])["rows"] if row["kind"] == "file")
    assert browser.find_element(By.ID, "verdict-score").text == f"{verdict['p_fake']:.4f}"
    assert browser.find_element(By.ID, "strip").get_attribute("data-frames") == str(verdict["frames"])
    screenshot(browser, tmp_path, "serve_video.png")
