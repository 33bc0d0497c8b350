"""Screenshot a participant report and the group report in headless Chromium, as in
docs/outputs.md: the top ``--height`` px of each at the report's width, as PNG.

Usage: python scripts/report_screenshots.py OUTPUT_DIR DEST_DIR [--subject 01]
       [--height 1400]
Needs the dev extra (Playwright) and a system Chromium; fails on a broken report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bids_app.report.browser import VIEWPORT, check_page, headless_chromium


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--subject", default="01")
    parser.add_argument("--height", type=int, default=1400)
    args = parser.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    pages = {"participant": args.output_dir / f"sub-{args.subject}.html",
             "group": args.output_dir / "group.html"}
    with headless_chromium() as browser:
        for name, page in pages.items():
            check = check_page(browser, page)
            if check.problems:
                print(f"{page}: {check.problems}", file=sys.stderr)
                return 1
            tab = browser.new_page(viewport={**VIEWPORT, "height": args.height})
            tab.goto(page.resolve().as_uri(), wait_until="load")
            target = args.dest / f"report_{name}.png"
            tab.screenshot(path=str(target))
            tab.close()
            print(f"{target} ({target.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
