"""Progress bars over bytes mapped and keys reduced, shown only when stderr is a terminal."""

from __future__ import annotations

import sys

from tqdm import tqdm


def wanted(enabled: bool | None = None) -> bool:
    return sys.stderr.isatty() if enabled is None else enabled


def bar(description: str, total: int | None, unit: str, enabled: bool) -> tqdm:
    """A tqdm bar on stderr; disabled (a no-op) when `enabled` is false."""
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        unit_scale=unit == "B",
        unit_divisor=1024 if unit == "B" else 1000,
        disable=not enabled,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )
