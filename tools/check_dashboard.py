"""Open the published asv dashboard in a real headless Chromium and check it shows data.

A JSON file can be complete while the page stays blank (a script fails to load, a format
changes), so this renders the pages as a browser does. The dashboard is first made
self-contained (tools/asv_offline.py), served on 127.0.0.1 only, and loaded with Debian's
`chromium --headless --dump-dom`; the DOM after the scripts ran must show, for every published
benchmark, a drawn plot on the summary grid and a measured value in the summary list, and the
graph page of one benchmark must draw its series. A screenshot of that page is saved.

    nox -s dashboard -- --check --no-serve                     # publish, then this check
    asv publish && python tools/check_dashboard.py            # exit 0 = renders with data

Only this check needs Chromium; `nox -s dashboard` alone publishes and serves the history.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from asv_offline import localize

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]
#: The benchmark whose graph page is checked and shot: the first that ends so.
GRAPH_SUFFIXES = (".track_seconds_per_call", ".track_tokens_per_second", ".time_call")
#: Virtual time the page may use for its scripts and data requests before the DOM is dumped.
BUDGET_MS = 20000


@contextlib.contextmanager
def served(directory: Path):
    """An HTTP server for `directory` on 127.0.0.1 and a free port; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # The browser closing a connection early is not the dashboard's fault.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def chromium(browser: str, url: str, *extra: str, window: str = "1600,3000") -> str:
    """Run headless Chromium on `url` with a throwaway profile; returns its stdout.

    The default window is tall so that the summary grid draws every tile (it draws lazily).
    """
    with tempfile.TemporaryDirectory(prefix="rnnbench-chromium-") as profile:
        done = subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window}",
             f"--virtual-time-budget={BUDGET_MS}", *extra, url],
            capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{browser} failed on {url}:\n{done.stderr[-2000:]}")
    return done.stdout


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip()


def check_summary_grid(dom: str, benchmarks: list[str]) -> list[str]:
    """Every benchmark has a tile on the front page, and its plot was drawn."""
    tiles = {m.group(1): m.group(2) for m in re.finditer(
        r'<a class="btn benchmark-container" href="#([^"]+)"(.*?)</a>', dom, re.S)}
    problems = [f"summary grid: no tile for {b}" for b in benchmarks if b not in tiles]
    problems += [f"summary grid: the plot of {b} was not drawn" for b in benchmarks
                 if b in tiles and "flot-base" not in tiles[b]]
    return problems


def check_summary_list(dom: str, benchmarks: list[str]) -> list[str]:
    """Every benchmark shows at least one measured value in the summary table."""
    measured = {}
    for row in re.findall(r"<tr>(.*?)</tr>", dom, re.S):
        name = re.search(r'<a href="#([^"?]+)\?"', row)
        value = re.search(r'<td class="value"[^>]*>(.*?)</td>', row, re.S)
        if name and value and _text(value.group(1)):
            measured.setdefault(name.group(1), _text(value.group(1)))
    return [f"summary list: no value shown for {b}" for b in benchmarks if b not in measured]


def check_graph(dom: str, benchmark: str) -> list[str]:
    """The benchmark's own page draws a plot with a legend and a numbered y axis."""
    main = dom.partition('id="main-graph"')[2]
    legend = re.findall(r'class="legendLabel">(.*?)</td>', main)
    y_ticks = re.findall(r'class="flot-y-axis.*?</div></div>', main, re.S)
    numbers = re.findall(r"tickLabel[^>]*>\s*([-\d.]+)", y_ticks[0]) if y_ticks else []
    problems = []
    if "flot-base" not in main:
        problems.append(f"graph {benchmark}: no plot drawn")
    if not legend:
        problems.append(f"graph {benchmark}: no series in the legend")
    if len(numbers) < 2:
        problems.append(f"graph {benchmark}: the y axis has no scale (no data plotted)")
    return problems


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("html", type=Path, nargs="?", default=Path(".asv/html"),
                   help="published dashboard (default: .asv/html)")
    p.add_argument("--screenshot", type=Path, default=Path("results/asv/dashboard.png"))
    p.add_argument("--cache", type=Path, default=Path(".asv/npm-cache"),
                   help="npm tarballs for the offline copy (default: .asv/npm-cache)")
    p.add_argument("--browser", default="chromium", help="Chromium executable")
    args = p.parse_args(argv)
    index = args.html / "index.json"
    if not index.is_file():
        p.error(f"{index} is missing: run `asv publish` first")
    if shutil.which(args.browser) is None:
        p.error(f"{args.browser!r} not found. This check renders the dashboard in headless "
                f"Chromium: on Debian `sudo apt-get install -y chromium` (the "
                f"browser alone: it is run from its command line, so the `chromium-driver` "
                f"package is not needed), or pass --browser with another Chromium executable "
                f"(chromium-browser, google-chrome). Without the check, `nox -s dashboard` "
                f"publishes and serves the history with no browser installed here.")
    benchmarks = sorted(json.loads(index.read_text())["benchmarks"])
    if not benchmarks:
        print("check_dashboard: the published dashboard has no benchmarks", file=sys.stderr)
        return 1
    localize(args.html, args.cache)
    graph = next((b for b in benchmarks if b.endswith(GRAPH_SUFFIXES)), benchmarks[0])
    with served(args.html) as url:
        problems = check_summary_grid(chromium(args.browser, url, "--dump-dom"), benchmarks)
        problems += check_summary_list(
            chromium(args.browser, url + "#summarylist", "--dump-dom"), benchmarks)
        problems += check_graph(chromium(args.browser, url + f"#{graph}", "--dump-dom"), graph)
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        chromium(args.browser, url + f"#{graph}", f"--screenshot={args.screenshot.resolve()}",
                 window="1400,900")
    for problem in problems:
        print(f"check_dashboard: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"check_dashboard: {len(benchmarks)} benchmarks render with data; "
          f"screenshot of {graph} in {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
