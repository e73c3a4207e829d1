"""How long ``failhook console``'s pages take with a large dead-letter queue.

The database is made by the orchestrator (its migrations), then filled directly with
``--entries`` dead letters and their runs by :func:`bench.dlq_listing.fill_sqlite` (rows built
by the orchestrator's own row functions), all dead-lettered within the last 6 days so that the
overview's 7-day charts count every one of them (its worst case). Then the orchestrator serves
it over mTLS and ``failhook console`` (the installed command, as the operator) serves the pages;
each page is fetched one request at a time over HTTP with the session cookie, and the time to
the last byte of the HTML is recorded (the console's gRPC calls and its rendering included).
The overview is measured twice: how long its background count of the 7 days takes (from the
first visit until the page shows the result), then the page itself while the result is fresh.
With ``--browser``, Debian's Chromium also loads the DLQ and a detail page and reports the
navigation's ``loadEventEnd``.

    .venv/bin/python bench/console_render.py                  # 100,000 entries, ~2 minutes
    .venv/bin/python bench/console_render.py --entries 10000 --samples 10 --browser

The figures go to stdout and to ``bench/results/console-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import dlq_listing
from bench.harness import BIN, HERE, start_orchestrator, stop, summary_ms
from failhook.certs import init_dev_certs

_URL = re.compile(r"http://([\d.]+):(\d+)/\?token=(\S+)")
_NEXT = re.compile(r'rel="next" href="([^"]+)"')
_ROW = re.compile(r'<tr class="dead-letter" data-id="([0-9a-f]+)"')
SIX_DAYS_US = 6 * 86_400 * 1_000_000


class Pages:
    """An HTTP client of the console holding its session cookie."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=300)
        self.conn.request("GET", f"/?token={token}")
        response = self.conn.getresponse()
        response.read()
        cookie = response.getheader("set-cookie") or ""
        if response.status != 303 or not cookie:
            raise SystemExit(f"the console did not open a session: {response.status}")
        self.cookie = cookie.split(";")[0]

    def get(self, path: str) -> tuple[float, str]:
        """GET a page; return the milliseconds to its last byte and its HTML."""
        began = time.perf_counter()
        self.conn.request("GET", path, headers={"Cookie": self.cookie})
        response = self.conn.getresponse()
        body = response.read().decode()
        elapsed = (time.perf_counter() - began) * 1000
        if response.status != 200:
            raise SystemExit(f"GET {path}: HTTP {response.status}\n{body[:2000]}")
        return elapsed, body


def _measure(pages: Pages, samples: int, overview_samples: int) -> dict[str, Any]:
    for _ in range(5):  # warm-up: the console's channel, the orchestrator's pool, SQLite's cache
        pages.get("/dead-letters")
    first = [pages.get("/dead-letters")[0] for _ in range(samples)]
    workflows = dlq_listing.WORKFLOWS
    filtered = [
        pages.get(f"/dead-letters?workflow={workflows[i % len(workflows)]}")[0] for i in range(samples)
    ]
    deep: list[float] = []
    _, html = pages.get("/dead-letters")
    for _ in range(samples):
        found = _NEXT.search(html)
        if found is None:
            break
        elapsed, html = pages.get(found[1].replace("&amp;", "&"))
        deep.append(elapsed)
    _, html = pages.get("/dead-letters?page_size=500")
    ids = _ROW.findall(html)
    if not ids:
        raise SystemExit("the DLQ page lists no entry")
    detail = [pages.get(f"/dead-letters/{ids[(i * 37) % len(ids)]}")[0] for i in range(samples)]
    runs = [pages.get("/runs?state=dead_lettered")[0] for _ in range(samples)]
    began = time.perf_counter()
    overview_first, html = pages.get("/overview")
    while "counted from" not in html:  # the count runs in the background; the page reloads itself
        time.sleep(0.5)
        _, html = pages.get("/overview")
    counted_in = (time.perf_counter() - began) * 1000
    match = re.search(r"counted from (\d+) entries", html)
    overview = [pages.get("/overview")[0] for _ in range(overview_samples)]
    return {
        "dlq_first_page": summary_ms(first),
        "dlq_filtered_first_page": summary_ms(filtered),
        "dlq_next_pages": summary_ms(deep),
        "dead_letter_detail": summary_ms(detail),
        "runs_list": summary_ms(runs),
        "overview_page": {**summary_ms(overview), "first_visit_ms": round(overview_first, 2)},
        "overview_count": {"ms": round(counted_in, 2), "entries_counted": match[1] if match else "?"},
        "detail_id": ids[0],
    }


async def _browser(url: str, base: str, detail_id: str, samples: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright  # noqa: PLC0415

    from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: PLC0415

    figures: dict[str, Any] = {}
    async with async_playwright() as playwright:
        with tempfile.TemporaryDirectory() as profile:
            context = await playwright.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            page = await context.new_page()
            await page.goto(url)
            for name, path in (("dlq_page", "/dead-letters"), ("detail_page", f"/dead-letters/{detail_id}")):
                loads = []
                for _ in range(samples):
                    await page.goto(base + path)
                    timing = await page.evaluate(
                        "() => { const [n] = performance.getEntriesByType('navigation');"
                        " return n.loadEventEnd - n.startTime; }"
                    )
                    loads.append(float(timing))
                figures[name] = summary_ms(loads)
            await context.close()
    return figures


def main() -> None:
    """Fill, serve, measure, print."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=100_000, help="dead letters (default 100,000)")
    parser.add_argument("--samples", type=int, default=30, help="requests per page pattern (default 30)")
    parser.add_argument("--overview-samples", type=int, default=10, help="overview requests (default 10)")
    parser.add_argument("--browser", action="store_true", help="also time page loads in Chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="failhook-console-bench-") as scratch:
        tmp = Path(scratch)
        certs = init_dev_certs(tmp / "certs")
        path = tmp / "failhook.db"
        url = f"sqlite+aiosqlite:///{path}"
        start_orchestrator(tmp, certs.directory, url, "migrate").stop()
        began = time.monotonic()
        dlq_listing.fill_sqlite(
            path, args.entries, dlq_listing.progress_printer(args.entries, "filled"), span_us=SIX_DAYS_US
        )
        print(f"filled {args.entries:,} dead letters in {time.monotonic() - began:.0f} s", flush=True)
        orchestrator = start_orchestrator(tmp, certs.directory, url, "console")
        files = certs.tls_files("operator")
        with (tmp / "console.log").open("wb") as log:
            console = subprocess.Popen(
                [
                    *(str(BIN / "failhook"), "console", "--target", orchestrator.target),
                    *("--tls-ca", str(files.ca), "--tls-cert", str(files.cert), "--tls-key", str(files.key)),
                    *("--listen", "127.0.0.1:0"),
                ],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        try:
            assert console.stdout is not None
            found = _URL.search(console.stdout.readline().decode())
            if found is None:
                raise SystemExit("failhook console printed no URL:\n" + (tmp / "console.log").read_text())
            host, port, token = found[1], int(found[2]), found[3]
            figures = _measure(Pages(host, port, token), args.samples, args.overview_samples)
            if args.browser:
                base = f"http://{host}:{port}"
                figures["browser"] = asyncio.run(
                    _browser(f"{base}/?token={token}", base, figures["detail_id"], args.samples)
                )
        finally:
            stop(console)
            orchestrator.stop()
    figures["entries"] = args.entries
    out = HERE / "results" / f"console-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
