"""The HTML report, rendered by a real browser: headless Chromium (Debian's `chromium` package)
lays the page out, and the test checks the timeline is there in the DOM the browser built and in
the pixels it drew."""
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib

import pytest
from gil_build import needs_gil

import allcores.gil as gil
from allcores.gil.html import PALETTE

pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sampler reads Linux /proc"),
              needs_gil]

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: install Debian's chromium package "
                                                            "(apt-get install chromium) to render the report")


def spin(seconds):
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        pass


@pytest.fixture(scope="module")
def report():
    with gil.meter() as m:
        ts = [threading.Thread(target=spin, args=(0.8,), name=f"spinner-{i}") for i in range(2)]
        ts.append(threading.Thread(target=time.sleep, args=(0.5,), name="sleeper <&>"))
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    return m.report()


def chromium(tmp_path, *args):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_page_is_self_contained(report, tmp_path):
    page = report.to_html(tmp_path / "r.html")
    assert (tmp_path / "r.html").read_text() == page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "nothing is fetched from a network"
    assert "<script src" not in page and "@import" not in page
    assert "sleeper &lt;&amp;&gt;" in page, "names are escaped"
    for name in ("spinner-0", "spinner-1", "GIL holder"):
        assert name in page
    assert 'id="cores-line"' in page and 'id="holds"' in page


@needs_browser
def test_chromium_lays_out_the_timeline(report, tmp_path):
    path = tmp_path / "r.html"
    report.to_html(path)
    p = chromium(tmp_path, "--dump-dom", "--virtual-time-budget=5000", path.as_uri())
    assert p.returncode == 0, p.stderr[-2000:]
    dom = p.stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    attrs = dict(re.findall(r'data-([\w-]+)="(\d+)"', body.group(1)))
    # The page's script measured what the browser laid out.
    assert int(attrs["timeline-width"]) >= 500
    assert int(attrs["timeline-height"]) >= 80
    assert int(attrs["visible-segments"]) >= 10
    assert 'class="seg held"' in dom and 'class="seg waiting"' in dom and 'class="seg gil"' in dom


def _png_pixels(data):
    """Decodes an 8-bit RGB or RGBA PNG (what Chromium writes) into rows of pixel tuples."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            bpp = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, prev, rows = zlib.decompress(idat), w * bpp, bytearray(w * bpp), []
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        prev = line
    return rows


@needs_browser
def test_chromium_draws_the_timeline(report, tmp_path):
    path, shot = tmp_path / "r.html", tmp_path / "r.png"
    report.to_html(path)
    p = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1300,900", "--hide-scrollbars", path.as_uri())
    assert shot.exists(), p.stderr[-2000:]
    rows = _png_pixels(shot.read_bytes())
    # A lane's colour follows the thread's place in report.threads, which may also list threads
    # other libraries left in this process (dask's offload pool, tqdm's monitor).
    spinners = [i for i, t in enumerate(report.threads) if t.name.startswith("spinner-")]
    assert len(spinners) == 2, [t.name for t in report.threads]
    colours = {tuple(int(c[i:i + 2], 16) for i in (1, 3, 5))
               for c in (PALETTE[k % len(PALETTE)] for k in spinners)}
    counts = {c: 0 for c in colours}
    for row in rows:
        for px in row:
            if px in counts:
                counts[px] += 1
    # Both spinners' holds are drawn, each in its colour, over a visible area.
    assert min(counts.values()) >= 500, counts
