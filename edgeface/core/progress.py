"""Progress bars on long work (tqdm on stderr when installed, nothing otherwise)."""
from __future__ import annotations

import sys

# Set by the CLI's --quiet: no bar anywhere in this process, whatever a caller deep inside asked for.
_QUIET = False


def set_quiet(quiet: bool = True) -> None:
    """Silence (or restore) every progress bar of this process (`--quiet` on any command)."""
    global _QUIET
    _QUIET = bool(quiet)


def quiet() -> bool:
    """True after set_quiet(): code that draws its own bars checks this."""
    return _QUIET


def progress(iterable, total: int | None = None, desc: str = "", enabled: bool = True, unit: str = "img"):
    """A progress bar over `iterable`, one tick per item: `unit` must name what an item is."""
    if not enabled or _QUIET:
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
    if not enabled or _QUIET:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, mininterval=1.0)
