"""The compatibility table, read from the registry: what `sentry syscalls` prints."""
import json

from syscalls.registry import table_for
from syscalls.tables import BY_ARCH


def rows(arch: str):
    for nr, (name, entry) in enumerate(zip(BY_ARCH[arch], table_for(arch))):
        if name is None:
            continue
        if entry is None:
            yield nr, name, "missing", "ENOSYS, logged once"
        else:
            yield nr, name, entry.status, entry.note


def render(arch: str, fmt: str) -> str:
    data = list(rows(arch))
    if fmt == "json":
        return json.dumps([dict(nr=nr, name=n, status=s, note=note) for nr, n, s, note in data], indent=1) + "\n"
    counts = {}
    for _, _, status, _ in data:
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    if fmt == "markdown":
        lines = [f"# Syscalls on {arch}", "", summary, "", "| nr | name | status | note |", "|---|---|---|---|"]
        lines += [f"| {nr} | {n} | {s} | {note} |" for nr, n, s, note in data]
        return "\n".join(lines) + "\n"
    width = max(len(n) for _, n, _, _ in data)
    lines = [f"{nr:>4}  {n:<{width}}  {s:<11}  {note}".rstrip() for nr, n, s, note in data]
    return "\n".join(lines + ["", summary]) + "\n"


