"""Shared helper of the benchmark scripts: each rewrites only its own section of RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"load average {load:.2f} at start; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def write_section(title: str, body: str, results_md: Path = RESULTS) -> None:
    """Replace (or append) the ``## {title}`` section, leaving the others untouched."""
    heading = f"## {title}"
    text = results_md.read_text() if results_md.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    section = f"{heading}\n\n{body.strip()}\n\n"
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results_md.write_text(text.rstrip("\n") + "\n")
