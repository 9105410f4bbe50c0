"""What a reader sees: the built book opened page by page in headless Chromium (Debian's
``chromium`` and ``chromium-driver``, driven by selenium), with every host but 127.0.0.1
unresolvable so that anything fetched from a CDN fails as it would offline."""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER = "/usr/bin/chromedriver"
SKIP_DIRS = ("_static", "_sources", "_images", "_sphinx_design_static", "_panels_static")

_STATE = """
const imgs = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.currentSrc || i.src);
const math = [...document.querySelectorAll('span.math, div.math')];
const unrendered = math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60));
const text = document.body.innerText;
const origin = location.origin;
const remote = performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith(origin));
const links = [...document.querySelectorAll('a[href]')].map(a => a.href).filter(h => h.startsWith(origin));
return {imgs, nmath: math.length, unrendered, text, remote, links,
        mathjax: typeof window.MathJax !== 'undefined'};
"""

_WAIT_MATHJAX = """
const done = arguments[arguments.length - 1];
if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
  MathJax.startup.promise.then(() => done(true), () => done(false));
} else { done(null); }
"""


def available() -> str | None:
    """None when a browser test can run here, else why not."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not any(Path(p).exists() for p in CHROMIUM) or not Path(DRIVER).exists():
        return "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    return None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test reports problems itself
        pass


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = next(p for p in CHROMIUM if Path(p).exists())
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--no-first-run",
        "--disable-extensions",
    ):
        opts.add_argument(arg)  # fmt: skip
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver


def pages(html: Path) -> list[Path]:
    return sorted(p for p in html.rglob("*.html") if p.relative_to(html).parts[0] not in SKIP_DIRS)


def check_book(html: Path, shots: Path, *, search_word: str) -> list[str]:
    """Every problem a reader would meet, one line each (empty: the book is fine)."""
    problems: list[str] = []
    if shots.exists():
        shutil.rmtree(shots)
    shots.mkdir(parents=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_port}"
    driver = _driver()
    try:
        for page in pages(html):
            rel = page.relative_to(html).as_posix()
            if 'http-equiv="Refresh"' in page.read_text(errors="replace")[:2000]:
                continue  # a redirect (index.html -> intro.html): its target is checked itself
            driver.get(f"{origin}/{quote(rel)}")
            typeset = driver.execute_async_script(_WAIT_MATHJAX)
            s = driver.execute_script(_STATE)
            name = rel.replace("/", "__").removesuffix(".html")
            driver.save_screenshot(str(shots / f"{name}.png"))
            say = lambda msg, rel=rel: problems.append(f"{rel}: {msg}")  # noqa: E731
            if s["imgs"]:
                say(f"images that did not load: {s['imgs'][:3]}")
            if s["nmath"] and (typeset is not True or s["unrendered"]):
                say(f"formulas not rendered (MathJax {typeset}): {s['unrendered'][:2]}")
            if re.search(r"\{(glue|cite)[:}]", s["text"]):
                say(
                    "unresolved {glue}/{cite} text: " + re.search(r".{0,40}\{(glue|cite)[:}].{0,40}", s["text"]).group()
                )
            if re.search(r"\\\(|\$\$", s["text"]):
                say("raw LaTeX in the page text")
            if s["remote"]:
                say(f"fetched from the network: {s['remote'][:3]}")
            for href in s["links"]:
                path = unquote(urlparse(href).path).lstrip("/") or "index.html"
                if not (html / path).exists():
                    say(f"broken internal link {href}")
            for entry in driver.get_log("browser"):
                if entry["level"] == "SEVERE":
                    say(f"console error: {entry['message'][:200]}")
        driver.get(f"{origin}/search.html?q={quote(search_word)}")
        deadline, hits = time.time() + 20, []
        while time.time() < deadline and not hits:
            time.sleep(0.5)
            hits = driver.execute_script(
                "return [...document.querySelectorAll('#search-results a, ul.search a')].map(a => a.href)"
            )
        driver.save_screenshot(str(shots / "search.png"))
        if not any("/chapters/" in h for h in hits):
            problems.append(f"search for {search_word!r} found no chapter (hits: {hits[:3]})")
    finally:
        driver.quit()
        server.shutdown()
    return problems
