"""The HTML report in a real browser: headless Chromium renders the table and every figure."""
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package 'chromium')")
def test_report_html_renders_table_and_figures_offline(tiny_run, tmp_path):
    html = tiny_run / "report.html"
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--dump-dom", html.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert '<table id="results">' in dom
    assert len(re.findall(r"<tr>", dom)) == 1 + 3  # header + raw pixels + two methods
    figures = sorted(p.name for p in (tiny_run / "figures").glob("*.png"))
    images = re.findall(r"<img alt=\"([^\"]+)\" src=\"data:image/png;base64,", dom)
    assert len(images) == len(figures) >= 5
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", "--window-size=1280,9000", html.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    # Below the table, the page is figures: cut it into bands and count the bands with drawing in them.
    bands = pixels[1000:].reshape(-1, 200, pixels.shape[1])[:25]
    drawn = [band.std() > 10 for band in bands]
    assert sum(drawn) >= 2 * len(figures), f"only {sum(drawn)} of {len(bands)} bands hold drawing"


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian package 'chromium')")
def test_report_html_fits_a_1280_px_window(tiny_run, tmp_path):
    """Nothing runs off the right edge: the page is no wider than the window (the wide results table
    scrolls inside its own box instead)."""
    probe = ("<script>document.body.dataset.fit = [document.documentElement.scrollWidth, window.innerWidth, "
             "document.querySelector('#results').offsetWidth].join(' ')</script></body>")
    page = tmp_path / "report.html"
    page.write_text((tiny_run / "report.html").read_text().replace("</body>", probe))
    dom = subprocess.run([CHROMIUM, *FLAGS, "--user-data-dir=" + str(tmp_path / "profile"), "--window-size=1280,900",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    page_width, window, table = map(int, re.search(r'data-fit="(\d+) (\d+) (\d+)"', dom).groups())
    assert window == 1280
    assert page_width == window, f"the page is {page_width} px wide in a {window} px window"
    assert table > 0  # the table was laid out (its box scrolls when it is wider than the page)
