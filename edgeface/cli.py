"""The `edgeface` command. Each subcommand lives in edgeface/commands/<name>.py and exposes
`register(subparsers)`; imports of heavy libraries happen inside the handlers so that
`edgeface --help` stays fast and the runtime commands never import torch."""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# Order here is the order in `edgeface --help`.
COMMAND_MODULES = ["eval", "models", "train"]


def build_parser() -> argparse.ArgumentParser:
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Expected user errors: one clear line, no traceback.
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"edgeface {args.command}: error: {msg}", file=sys.stderr)
        return 1
