"""Screenshots of an evaluation report for docs/ (headless Chromium through selenium).

    python docs/make_report_screenshots.py dleem-demo/report [-o docs]

Writes report_summary.png (summary and numbers), report_gallery.png (held-out tiles),
report_pores.png (pore segmentation and distributions) and report_full.png (whole page,
downscaled). Needs Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="report folder (with index.html)")
    ap.add_argument("-o", "--out", type=Path, default=Path(__file__).parent)
    ap.add_argument("--width", type=int, default=1400)
    args = ap.parse_args()

    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              f"--window-size={args.width},1000"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        drv.get((args.report / "index.html").resolve().as_uri())
        height = drv.execute_script("return document.body.scrollHeight")
        drv.set_window_size(args.width, height)
        page = Image.open(io.BytesIO(drv.get_screenshot_as_png())).convert("RGB")

        def box(selector: str) -> tuple[int, int]:
            r = drv.execute_script(
                "const e = document.querySelector(arguments[0]); const b = e.getBoundingClientRect();"
                "return [b.top + window.scrollY, b.bottom + window.scrollY];", selector)
            return int(r[0]), int(r[1])

        args.out.mkdir(parents=True, exist_ok=True)

        def save(img, name: str) -> None:  # a 256-colour palette keeps the PNGs small
            img.convert("P", palette=Image.ADAPTIVE, colors=256).save(args.out / name,
                                                                      optimize=True)

        top = 0
        _, numbers_end = box("#numbers")
        save(page.crop((0, top, args.width, numbers_end + 10)), "report_summary.png")
        g0, _ = box("#gallery")
        figs = drv.execute_script(
            "return Array.from(document.querySelectorAll('#gallery figure')).slice(0, 2)"
            ".map(f => f.getBoundingClientRect().bottom + window.scrollY)")
        save(page.crop((0, g0 - 6, args.width, int(figs[-1]) + 10)), "report_gallery.png")
        p0, p1 = box("#pores")
        save(page.crop((0, p0 - 6, args.width, p1 + 6)), "report_pores.png")
        scale = 500 / args.width
        save(page.resize((500, int(page.height * scale)), Image.LANCZOS), "report_full.png")
    finally:
        drv.quit()
    sys.stdout.write(f"screenshots in {args.out}\n")


if __name__ == "__main__":
    main()
