"""Make a published asv dashboard self-contained: its CDN scripts and styles, served locally.

`asv publish` writes an index.html that loads jQuery, flot, bootstrap and a few plugins from
public CDNs. Where those hosts cannot be reached (a sandbox, an offline lab, a CI runner) the
dashboard shows only an error page. This rewrites every CDN reference to a copy under
<html>/vendor/, taken from the same library's npm package (fetched with `npm pack`, cached),
and drops the Subresource-Integrity attributes, which pin the CDN's exact bytes. Running it
again is a no-op.

    python tools/asv_offline.py .asv/html
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

#: cdnjs library name -> npm package; stupidtable 1.0.1 was never on npm, 1.1.3 keeps its API.
CDNJS_TO_NPM = {"flot": "flot", "blueimp-md5": "blueimp-md5",
                "stupidtable": "stupid-table-plugin@1.1.3"}
PATTERNS = [
    (re.compile(r"https://cdn\.jsdelivr\.net/npm/(?P<spec>[^/]+@[^/]+)/(?P<path>.+)"), None),
    (re.compile(r"https://cdnjs\.cloudflare\.com/ajax/libs/(?P<lib>[^/]+)/(?P<ver>[^/]+)/"
                r"(?P<path>.+)"), "cdnjs"),
    (re.compile(r"https://code\.jquery\.com/jquery-(?P<ver>[\d.]+)\.min\.js"), "jquery"),
]
TAG = re.compile(r"<(script|link)\b[^>]*?(?:src|href)=\"(https://[^\"]+)\"[^>]*>")
SRI_ATTRIBUTES = re.compile(r'\s+(?:integrity|crossorigin|referrerpolicy)="[^"]*"')


def npm_source(url: str) -> tuple[str, str]:
    """(npm package spec, path inside the package) holding the file a CDN URL serves."""
    for pattern, kind in PATTERNS:
        m = pattern.fullmatch(url)
        if not m:
            continue
        if kind is None:
            return m["spec"], m["path"]
        if kind == "jquery":
            return f"jquery@{m['ver']}", "dist/jquery.min.js"
        lib = CDNJS_TO_NPM.get(m["lib"])
        if lib is None:
            break
        return (lib if "@" in lib else f"{lib}@{m['ver']}"), m["path"]
    raise ValueError(f"no npm source known for the dashboard asset {url}; "
                     f"add it to {Path(__file__).name}")


def _tarball(spec: str, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    name, _, version = spec.rpartition("@")
    cached = cache / f"{name.replace('/', '-')}-{version}.tgz"
    if not cached.exists():
        if shutil.which("npm") is None:
            raise RuntimeError(f"npm is needed once to fetch {spec} for the offline dashboard")
        subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(cache), spec],
                       check=True, capture_output=True)
    return cached


def vendor_file(spec: str, path: str, cache: Path, vendor: Path) -> Path:
    """Unpack the file (and its folder's siblings, e.g. bootstrap's fonts) under `vendor`."""
    target_root = vendor / spec.replace("/", "-")
    with tarfile.open(_tarball(spec, cache)) as tar:
        names = {m.name.removeprefix("package/"): m for m in tar.getmembers() if m.isfile()}
        wanted = path if path in names else path.replace(".min.js", ".js")
        if wanted not in names:
            raise ValueError(f"{spec} has no {path}; it has {sorted(names)[:20]}")
        top = wanted.split("/")[0] + "/" if "/" in wanted else wanted
        for rel, member in names.items():
            if rel == wanted or (top.endswith("/") and rel.startswith(top)):
                out = target_root / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
    return target_root / wanted


def localize(html_dir: Path, cache: Path) -> list[str]:
    """Rewrite every CDN reference in html_dir/*.html; returns the URLs it replaced."""
    replaced = []
    for page in sorted(html_dir.glob("*.html")):
        text = page.read_text()

        def local(match: re.Match) -> str:
            url = match.group(2)
            spec, path = npm_source(url)
            copy = vendor_file(spec, path, cache, html_dir / "vendor")
            replaced.append(url)
            tag = match.group(0).replace(url, copy.relative_to(html_dir).as_posix())
            return SRI_ATTRIBUTES.sub("", tag)

        page.write_text(TAG.sub(local, text))
    return replaced


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("html", type=Path, nargs="?", default=Path(".asv/html"))
    p.add_argument("--cache", type=Path, default=Path(".asv/npm-cache"),
                   help="where npm tarballs are kept (default: .asv/npm-cache)")
    args = p.parse_args(argv)
    if not (args.html / "index.html").is_file():
        p.error(f"{args.html} has no index.html: run `asv publish` first")
    replaced = localize(args.html, args.cache)
    print(f"asv_offline: {len(replaced)} CDN references now served from {args.html / 'vendor'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
