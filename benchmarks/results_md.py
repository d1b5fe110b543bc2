"""One results file, many benchmark parts: each part rewrites only its own marked block."""

from __future__ import annotations

from pathlib import Path


def update_section(results: Path, key: str, text: str, title: str) -> None:
    """Replace the block between ``<!-- key -->`` markers of ``results`` (append if new), so a
    rerun of one part keeps the others' numbers; ``title`` heads a new file."""
    results.parent.mkdir(parents=True, exist_ok=True)
    old = results.read_text() if results.exists() else f"# {title}\n"
    start, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in old and end in old:
        new = old[:old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    results.write_text(new)
