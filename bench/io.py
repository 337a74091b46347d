"""Every file the suite writes goes through here: written whole or not at all, strict JSON.

A reader, or a kill at any moment, sees the old file or the new one, never half of one: the
text goes to a temporary file beside the target, is flushed to disk, then renamed over it.
JSON has no NaN or infinity, so non-finite floats are written as the strings "nan", "inf"
and "-inf" and turned back into floats on reading (one policy for every results file).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _place(path: Path, write: Callable[[Path], None], put: Callable[[str, Path], None]) -> Path:
    """write(tmp) to a temporary file beside `path`, flush it to disk, then put(tmp, path);
    the temporary name never outlives the call."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                               suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would survive the rename
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        put(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def write_with(path: Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) for a temporary path beside `path`, then rename it over `path`."""
    return _place(path, write, os.replace)


def remove_leftovers(path: Path) -> list[Path]:
    """Delete the temporary files that writes of `path` killed midway left beside it.

    Only for a file that nothing else writes now (a run's own results file, say).
    """
    path = Path(path)
    found = list(path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"))
    for leftover in found:
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    return found


def write_text(path: Path, text: str) -> Path:
    """Replace `path` with `text`, atomically."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _restore(value):
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    return value


def dumps(document) -> str:
    """Strict JSON text of `document`, non-finite floats as strings."""
    return json.dumps(_finite(document), indent=1, allow_nan=False) + "\n"


def loads(text: str):
    """The inverse of `dumps`."""
    return _restore(json.loads(text))


def write_json(path: Path, document) -> Path:
    """Replace `path` with `document` as strict JSON, atomically."""
    return write_text(path, dumps(document))


def create_json(path: Path, document) -> Path:
    """Create `path` holding `document`, whole, or raise FileExistsError if it exists.

    The text is written beside it first and then hard-linked into place: the link fails if
    another writer got there first, and no reader ever sees the file empty or partial.
    """
    return _place(path, lambda tmp: tmp.write_text(dumps(document), encoding="utf-8"),
                  os.link)


def read_json(path: Path):
    """A JSON file written by `write_json`; an unreadable one is a ValueError naming it."""
    path = Path(path)
    try:
        return loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); it may have been written by "
                         "something else or damaged") from None
