"""edge-seg serve in a real browser: Debian's chromium + chromium-driver through selenium.

Uploads the shipped example through the page's file input, waits for the result, checks the
findings as rendered, and takes a screenshot (to tmp, or to $EDGE_SEG_SCREENSHOT: the README's
docs/img/serve_result.png is made with
``EDGE_SEG_SCREENSHOT=docs/img/serve_result.png python -m pytest tests/test_serve_browser.py``).
Skipped, with the reason, where chromium, chromedriver or selenium is absent.
"""

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="needs the 'serve' extra: pip install 'edge-seg[serve]'")
pytest.importorskip("uvicorn", reason="needs the 'serve' extra")
pytest.importorskip("selenium", reason="needs selenium (the 'test' extra)")

from edge_runtime.serve.app import ServerThread, create_app  # noqa: E402
from edge_runtime.serve.settings import ServeConfig  # noqa: E402

pytestmark = [pytest.mark.device, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[1]
GLIOMA = ROOT / "examples" / "glioma_718.png"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WAIT_S = 60


def _find(names):
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def driver():
    browser, chromedriver = _find(BROWSERS), _find(("chromedriver",))
    if not browser or not chromedriver:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium "
                    f"chromium-driver); found browser={browser}, chromedriver={chromedriver}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--force-device-scale-factor=1",
                "--disable-extensions", "--no-first-run", "--lang=en-GB"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})   # console, CSP reports
    try:
        drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    except Exception as exc:  # noqa: BLE001 - a browser that cannot start is an environment issue
        pytest.skip(f"chromium did not start under selenium: {' '.join(str(exc).split())[:200]}")
    drv.set_page_load_timeout(WAIT_S)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from edge_runtime.bundle import load_bundle
    from edge_runtime.segment import Segmenter
    bundle = load_bundle(None)
    config = ServeConfig(tmp_path_factory.mktemp("browser") / "data")
    app = create_app(config, Segmenter(bundle, threads=1), model_name=bundle.name)
    with ServerThread(app) as url:
        yield url


def _upload(driver, url, path):
    from selenium.webdriver.common.by import By
    driver.get(url + "/")
    driver.find_element(By.ID, "files").send_keys(str(path))
    assert path.name in driver.find_element(By.ID, "chosen").text      # app.js is running
    driver.find_element(By.ID, "submit").click()


def test_upload_the_example_and_see_the_outlined_tumour(driver, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    _upload(driver, server, GLIOMA)
    headline = WebDriverWait(driver, WAIT_S).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, ".findings .headline")))
    assert headline.text == "Tumour found"
    assert "Not a medical device." in driver.find_element(By.ID, "notice").text
    rows = {dt.text: dd.text.replace("\u00a0", " ") for dt, dd in zip(
        driver.find_elements(By.CSS_SELECTOR, ".findings dt"),
        driver.find_elements(By.CSS_SELECTOR, ".findings dd"))}
    assert rows["Bounding box"] == "x 300–357, y 321–381 (58 × 61 pixels)"
    assert rows["Area"].startswith("2,684 pixels, 1.02 % of the image")
    assert rows["Confidence"] == "97 % mean model probability inside the outline (highest 100 %)"
    # both layers are loaded and drawn at the same size
    sizes = driver.execute_script(
        "return Array.from(document.querySelectorAll('.stack img')).map("
        "i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])")
    assert len(sizes) == 2 and all(done and w == 512 for done, w, _ in sizes)
    assert sizes[0][2] == sizes[1][2] > 300
    layer = driver.find_element(By.CSS_SELECTOR, ".stack img.layer")
    # the opacity slider drives the layer's opacity; the checkbox hides it
    slider = driver.find_element(By.ID, "opacity")
    driver.execute_script("arguments[0].value = 40; arguments[0].dispatchEvent("
                          "new Event('input'));", slider)
    assert abs(float(layer.value_of_css_property("opacity")) - 0.4) < 1e-6
    assert driver.find_element(By.ID, "opacity-value").text == "40 %"
    driver.find_element(By.ID, "show-mask").click()
    assert not layer.is_displayed()
    driver.find_element(By.ID, "show-mask").click()
    assert layer.is_displayed()
    driver.execute_script("arguments[0].value = 100; arguments[0].dispatchEvent("
                          "new Event('input'));", slider)
    links = [a.text for a in driver.find_elements(By.CSS_SELECTOR, ".downloads a")]
    assert links == ["Mask PNG", "Overlay PNG", "Findings JSON"]
    # no script or style was refused by the Content-Security-Policy
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors
    shot = Path(os.environ.get("EDGE_SEG_SCREENSHOT") or tmp_path / "serve_result.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_a_non_image_gets_a_one_line_error(driver, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a scan\n")
    _upload(driver, server, notes)
    error = WebDriverWait(driver, WAIT_S).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "#errors .error")))
    assert error.text == "notes.txt: not an image file (or an unsupported format)"
    assert "\n" not in error.text
    # the server is still there: the page offers the form again, and it works
    assert driver.find_element(By.ID, "upload-form").is_displayed()
    driver.get(server + "/results")
    assert "could not be read" in driver.find_element(By.CSS_SELECTOR, "table.results").text


def test_a_folder_of_scans_gives_a_slice_scroller(driver, server, tmp_path):
    """The folder input (a DICOM series exported as a folder) sends every file in it; the
    result scrolls through them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    series = tmp_path / "series"
    series.mkdir()
    for name in ("glioma_718.png", "meningioma_1.png"):
        shutil.copy(ROOT / "examples" / name, series / name)
    driver.get(server + "/")
    driver.find_element(By.ID, "folder").send_keys(str(series))
    WebDriverWait(driver, 10).until(    # chromium lists the folder after send_keys returns
        lambda d: d.find_element(By.ID, "chosen").text.startswith("2 files:"))
    driver.find_element(By.ID, "submit").click()
    label = WebDriverWait(driver, WAIT_S).until(
        ec.visibility_of_element_located((By.ID, "slice-label")))
    assert label.text == "Scan 1 of 2"
    sections = driver.find_elements(By.CSS_SELECTOR, "section.scan")
    assert [s.is_displayed() for s in sections] == [True, False]
    driver.find_element(By.ID, "next").click()
    assert label.text == "Scan 2 of 2"
    assert [s.is_displayed() for s in sections] == [False, True]
    assert sections[1].find_element(By.CSS_SELECTOR, ".file").text == "meningioma_1.png"
    driver.find_element(By.ID, "prev").click()
    assert label.text == "Scan 1 of 2" and sections[0].is_displayed()


def test_a_dicom_series_folder_is_one_series_with_its_volume_and_a_slice_scroller(
        driver, server, tmp_path):
    """A synthetic MR series sent as a folder: one series card (volume, sizes, montage, SEG)
    and a scroller over its slices in slice order (buttons and arrow keys). The screenshot
    goes to tmp, or to $EDGE_SEG_SERIES_SCREENSHOT (docs/img/serve_series.png)."""
    pytest.importorskip("highdicom", reason="needs the 'dicom' extra: pip install "
                                            "'edge-seg[dicom]'")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from edge_runtime.dicom.synthetic import example_stack, write_series
    folder = tmp_path / "T1_series"
    # written in reverse, so that the names' order is not the slice order
    paths = write_series(folder, example_stack(ROOT / "examples", 5, which=0)[::-1],
                         series_number=3, description="T1 post-contrast (synthetic)",
                         origin=(-128.0, -128.0, 60.0), slice_spacing=-5.0, name="im")
    assert len(paths) == 5
    driver.get(server + "/")
    driver.find_element(By.ID, "folder").send_keys(str(folder))
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.ID, "chosen").text.startswith("5 files:"))
    driver.find_element(By.ID, "submit").click()
    label = WebDriverWait(driver, WAIT_S).until(
        ec.visibility_of_element_located((By.ID, "slice-label-0")))
    assert label.text == "Slice 1 of 5"
    card = driver.find_element(By.CSS_SELECTOR, "#series-0 .series-card")
    assert card.find_element(By.CSS_SELECTOR, ".headline").text == \
        "Tumour found on 3 of 5 slices"
    volume = card.find_element(By.CSS_SELECTOR, 'dd[data-key="volume"]').text
    assert volume.endswith(" mL (slice spacing 5.00 mm from position differences)"), volume
    links = [a.text for a in card.find_elements(By.CSS_SELECTOR, ".downloads a")]
    assert links == ["DICOM SEG", "Series JSON", "Montage PNG"]
    montage = driver.find_element(By.CSS_SELECTOR, "#series-0 figure.montage img")
    driver.execute_script("arguments[0].scrollIntoView()", montage)
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", montage))
    sections = driver.find_elements(By.CSS_SELECTOR, "#series-0 section.scan")
    names = [s.get_attribute("aria-label") for s in sections]
    # slice order is along the normal (positions), not the file names: im_005 comes first
    assert names == [f"Slice {k} of 5 · im_{6 - k:03d}.dcm" for k in range(1, 6)]
    assert [s.is_displayed() for s in sections] == [True, False, False, False, False]
    driver.find_element(By.ID, "next-0").click()
    assert label.text == "Slice 2 of 5" and sections[1].is_displayed()
    assert sections[1].find_element(By.CSS_SELECTOR, ".headline").text == "Tumour found"
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    assert label.text == "Slice 3 of 5"
    assert [s.is_displayed() for s in sections] == [False, False, True, False, False]
    slider = driver.find_element(By.ID, "slice-0")
    driver.execute_script("arguments[0].value = 5; arguments[0].dispatchEvent("
                          "new Event('input'));", slider)
    assert label.text == "Slice 5 of 5"
    assert sections[4].find_element(By.CSS_SELECTOR, ".headline").text == "No tumour found"
    driver.find_element(By.ID, "prev-0").click()
    driver.find_element(By.ID, "prev-0").click()
    assert label.text == "Slice 3 of 5"
    img = sections[2].find_element(By.CSS_SELECTOR, "img.layer")
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth === 512", img))
    assert "Not a medical device." in driver.find_element(By.ID, "notice").text
    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors
    shot = Path(os.environ.get("EDGE_SEG_SERIES_SCREENSHOT") or tmp_path / "serve_series.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    size = driver.get_window_size()
    driver.set_window_size(1280, 1560)         # the series card and one slice on one picture
    try:
        driver.execute_script("window.scrollTo(0, 0)")
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.set_window_size(size["width"], size["height"])
