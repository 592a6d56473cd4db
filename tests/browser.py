"""Debian's headless chromium driven by selenium through /usr/bin/chromedriver, for the
pages' browser tests (the gateway's status page, the hub's map).

    with browser.session(tmp_path) as drv:          # pytest.skip()s if chromium is absent
        drv.get(url)
        rows = browser.retry(lambda: [r.text for r in browser.wait_for(drv, "#nodes tr")])
        png = browser.screenshot(drv, tmp_path / "page.png")

Each session gets a fresh profile directory and no network beyond what the page asks for
(no sync, no component updates, no QUIC). Install: tools/setup/ensure-chromium.sh.
"""
import contextlib
import os
import shutil
import struct
import time
import zlib

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1600")


def missing():
    """Why no browser test can run here, or None."""
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not os.access(exe, os.X_OK):
            return "%s is not installed (tools/setup/ensure-chromium.sh installs it as root)" % exe
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    return None


@contextlib.contextmanager
def session(tmp_path, page_load_timeout=90):
    why = missing()
    if why:
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = os.path.join(str(tmp_path), "chromium-profile")
    os.makedirs(profile, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_argument("--user-data-dir=%s" % profile)
    service = Service(CHROMEDRIVER, log_output=os.path.join(str(tmp_path), "chromedriver.log"))
    drv = webdriver.Chrome(options=opts, service=service)
    drv.set_page_load_timeout(page_load_timeout)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(drv, css, timeout=60.0, count=1):
    """Wait until at least `count` elements match `css`; returns them."""
    from selenium.webdriver.common.by import By
    deadline = time.monotonic() + timeout
    found = []
    while time.monotonic() < deadline:
        found = drv.find_elements(By.CSS_SELECTOR, css)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError("no %d element(s) %r after %g s; page text:\n%s" % (
        count, css, timeout, drv.find_element(By.TAG_NAME, "body").text[:2000]))


def retry(fn, tries=5):
    """fn() again when the page redrew the elements it held (live pages replace rows)."""
    from selenium.common.exceptions import StaleElementReferenceException
    for i in range(tries):
        try:
            return fn()
        except StaleElementReferenceException:
            if i == tries - 1:
                raise
            time.sleep(0.2)


def screenshot(drv, path):
    """Save a PNG of the viewport; returns its decoded RGB pixels as PngImage."""
    drv.save_screenshot(str(path))
    return read_png(path)


class PngImage:
    def __init__(self, width, height, rows):
        self.width, self.height, self.rows = width, height, rows

    def pixel(self, x, y):
        return self.rows[y][x]

    def count(self, rgb, tol=12):
        """How many pixels are within `tol` of the colour rgb on every channel."""
        r0, g0, b0 = rgb
        n = 0
        for row in self.rows:
            for (r, g, b) in row:
                if abs(r - r0) <= tol and abs(g - g0) <= tol and abs(b - b0) <= tol:
                    n += 1
        return n


def read_png(path):
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what chromium writes) with zlib."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("%s is not a PNG" % path)
    pos, idat, width = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, ctype, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                raise ValueError("unsupported PNG: depth %d colour type %d interlace %d"
                                 % (depth, ctype, interlace))
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(width)])
        prev = line
    return PngImage(width, height, rows)
