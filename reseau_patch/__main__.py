"""Command line: ``python -m reseau_patch COMMAND`` (``demo`` for now; ``run``/``doctor`` later)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__, demo


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; each subcommand sets ``func(args) -> exit status``."""
    parser = argparse.ArgumentParser(
        prog="python -m reseau_patch",
        description="reseau_patch: a libev/libuv-free networking stack for Python.")
    parser.add_argument("--version", action="version", version=f"reseau_patch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo_parser = sub.add_parser(
        "demo", help="echo server + N clients on an io EventLoop, verified by SHA-256",
        description=demo.__doc__)
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=demo.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns its exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
