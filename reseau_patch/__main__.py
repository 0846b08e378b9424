"""Command line: ``python -m reseau_patch demo | run ... | doctor | bench ...``.

``run`` is dispatched before anything else is imported: patching must come first.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from . import __version__

_REST_MARKUP = re.compile(r"(?::[a-z]+:)?``?([^`]+)``?")


def plain_text(doc: str | None) -> str:
    """A docstring for ``--help``: reST roles and literals (``x``, :mod:`x`) as plain x."""
    return _REST_MARKUP.sub(r"\1", doc or "")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; each subcommand sets ``func(args) -> exit status``."""
    # Imported here, not at the top: ``run`` must not pay for the demos' imports.
    from . import demo, demo_https

    parser = argparse.ArgumentParser(
        prog="python -m reseau_patch",
        description="reseau_patch: a libev/libuv-free networking stack for Python.")
    parser.add_argument("--version", action="version", version=f"reseau_patch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    https_parser = sub.add_parser(
        "demo", help="patch_all(), then stdlib urllib clients against a green HTTPS server",
        description=plain_text(demo_https.__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    demo_https.add_arguments(https_parser)
    https_parser.set_defaults(func=demo_https.main)
    demo_parser = sub.add_parser(
        "io-demo", help="echo server + N clients on an io EventLoop, verified by SHA-256",
        description=plain_text(demo.__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=demo.main)
    run_parser = sub.add_parser("run", help="patch_all(), then run a script or -m module",
                                add_help=False)
    run_parser.set_defaults(func=lambda a: 0)
    sub.add_parser("bench", help="run the benchmarks (python -m benchmarks; see --help)",
                   add_help=False)
    doctor_parser = sub.add_parser("doctor", help="loop, resolver, patches and versions")
    doctor_parser.set_defaults(func=lambda a: _doctor())
    return parser


def _doctor() -> int:
    from .cli import doctor

    return doctor()


def _bench(argv: list[str]) -> int:
    """``bench [names...]``: the harness in ``benchmarks/`` next to this package (a source
    checkout; ``benchmarks`` is not installed with the package)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "harness.py").is_file():
        raise SystemExit(f"reseau_patch bench: no benchmarks/ next to {root / 'reseau_patch'}; "
                         "run it from a source checkout")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.__main__ import main as bench_main

    return bench_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        from .cli import run

        run(argv[1:])
        return 0
    if argv and argv[0] == "bench":
        return _bench(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
