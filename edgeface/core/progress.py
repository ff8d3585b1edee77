"""Progress bars on long work (tqdm on stderr when installed, nothing otherwise)."""
from __future__ import annotations

import sys


def progress(iterable, total: int | None = None, desc: str = "", enabled: bool = True, unit: str = "img"):
    """A progress bar over `iterable`, one tick per item: `unit` must name what an item is."""
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, mininterval=1.0)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str = "", enabled: bool = True, unit: str = "img"):
    """A bar advanced by .update(n) (e.g. by a batch's image count), closed with .close()."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, mininterval=1.0)
