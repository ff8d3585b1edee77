"""The `edgeface` command. Each subcommand lives in edgeface/commands/<name>.py and exposes
`register(subparsers)`; imports of heavy libraries happen inside the handlers so that
`edgeface --help` stays fast and the runtime commands never import torch."""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from . import __version__

# Order here is the order in `edgeface --help`.
COMMAND_MODULES = ["models", "train", "distill", "eval", "fairness", "prune", "quantize", "export", "calibrate", "recognize", "bench"]


def build_parser() -> argparse.ArgumentParser:
    """The `edgeface` argument parser, with a subcommand registered by each module in COMMAND_MODULES."""
    parser = argparse.ArgumentParser(
        prog="edgeface",
        description="Face-recognition models from training to phones and embedded boards.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgeface {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"edgeface.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `edgeface` command line; returns the exit code. Expected errors (user_error_kind) print one line
    (and a JSON error with --json) and return 1, Ctrl-C returns 130, no command prints the help and returns 2; other
    exceptions propagate with their traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    if getattr(args, "quiet", False):
        from .core.progress import set_quiet

        set_quiet()  # also the bars of stages that are not handed the flag (PT2E QAT, retraining)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - sorted below: expected errors get one line, bugs a traceback
        kind = user_error_kind(exc)
        if kind is None:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if getattr(args, "json", False):
            # --json promises JSON on stdout: errors too (exit code 1 as always)
            print(json.dumps({"error": str(msg), "kind": kind, "exit_code": 1}, indent=2))
        print(f"edgeface {args.command}: error: {msg}", file=sys.stderr)
        return 1


def user_error_kind(exc: BaseException) -> str | None:
    """The kind of an expected user error (bad input, missing file, a refused bundle or gallery,
    a runtime missing on this machine), or None for a bug, which keeps its traceback."""
    import sqlite3

    if isinstance(exc, ImportError):
        return "missing_dependency"
    kind = getattr(exc, "kind", None) or getattr(exc, "reason", None)
    if isinstance(kind, str):
        return kind  # BundleError.kind, ImageError.reason
    names = {c.__name__ for c in type(exc).__mro__}
    if "GalleryError" in names:
        return "gallery"
    if "BackendError" in names:
        return "backend"
    if isinstance(exc, sqlite3.Error):
        return "gallery"
    if isinstance(exc, KeyError):
        return "not_found"
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return "file"
    if isinstance(exc, ValueError):
        return "invalid"
    return None
