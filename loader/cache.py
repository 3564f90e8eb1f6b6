"""A disk cache of parsed ELF facts, so that a binary seen before is planned
without importing lief (~370 ms).

One JSON file per binary, named by the sha256 of its bytes, under
$XDG_CACHE_HOME/sentry/elf/ (default ~/.cache/sentry/elf/). Only successful
parses are stored. Any trouble reading or writing the cache counts as a miss:
the cache may speed a run up, never break it. SENTRY_NO_CACHE=1 turns it off.
"""

from __future__ import annotations

import json
import os

FORMAT = 1  # bump when the stored record changes shape or meaning


def directory() -> str | None:
    if os.environ.get("SENTRY_NO_CACHE", "") not in ("", "0"):
        return None
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative path
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sentry", "elf")


def load(key: str) -> dict | None:
    where = directory()
    if where is None:
        return None
    try:
        with open(os.path.join(where, f"{key}.json"), "rb") as f:
            record = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    return record.get("value")


def store(key: str, value: dict) -> None:
    where = directory()
    if where is None:
        return
    import tempfile  # only on a miss: keeps the common start fast
    try:
        os.makedirs(where, exist_ok=True)
        # Write aside then rename, so a concurrent reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=where, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"format": FORMAT, "value": value}, f)
            os.replace(tmp, os.path.join(where, f"{key}.json"))
        except BaseException:
            os.unlink(tmp)
            raise
    except (OSError, ValueError):
        pass
