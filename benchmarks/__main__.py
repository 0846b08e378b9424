"""``python -m benchmarks [names...]`` (also ``python -m reseau_patch bench``).

Runs the named workloads (all by default) with each implementation in its own process,
rounds interleaved, then writes JSON under ``--out`` (default ``benchmarks/results/``),
regenerates ``benchmarks/RESULTS.md`` from every workload's latest JSON there, and draws
the plots. A whole default run is sized to finish in about ten minutes on two cores.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .harness import HERE, load, load_saved, missing, run_all, save
from .registry import WORKLOADS

DEFAULT_ROUNDS = 3


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"workloads to run (default: all): {', '.join(WORKLOADS)}")
    p.add_argument("--rounds", type=int, default=None,
                   help=f"interleaved rounds (default {DEFAULT_ROUNDS}; 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny counts, 1 round; checks the harness, not speed")
    p.add_argument("--out", type=Path, default=HERE / "results",
                   help="directory for the JSON results and plots (default benchmarks/results)")
    p.add_argument("--markdown", type=Path, default=None,
                   help="where RESULTS.md goes (default benchmarks/RESULTS.md, or OUT/RESULTS.md "
                        "when --out is given)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-pin", action="store_true",
                   help="let the scheduler place children (default: each round's children and "
                        "their peers pinned to one CPU; see harness.py)")
    p.add_argument("--list", action="store_true", help="list the workloads and exit")


def regenerate_command(rounds: int, quick: bool) -> str:
    """The command that reruns every workload as this run did (what RESULTS.md's first
    line names: a run of a subset regenerates only its own sections)."""
    return shlex.join(["python", "-m", "benchmarks", *(["--quick"] if quick else []),
                       "--rounds", str(rounds)])


def main_args(args: argparse.Namespace, command: str) -> int:
    from . import report

    if args.list:
        for name in WORKLOADS:
            w = load(name)
            why = missing(name)
            print(f"{name:16} {w.title}  [baseline {w.baseline}; {', '.join(w.impls)}]"
                  + (f"  (not available: {why})" if why else ""))
        return 0
    for n in args.names:
        load(n)  # unknown names and broken modules fail before anything runs
        why = missing(n)
        if why:
            raise SystemExit(f"workload {n} is not available: {why}")
    names = args.names or [n for n in WORKLOADS if load(n) and not missing(n)]
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else DEFAULT_ROUNDS)
    if rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {rounds}")
    doc = run_all(names, rounds, args.quick, command, pin=not args.no_pin)
    files = save(doc, args.out)
    md = args.markdown
    if md is None:
        md = HERE / "RESULTS.md" if args.out == HERE / "results" else args.out / "RESULTS.md"
    docs = load_saved(args.out)
    report.write_markdown(docs, md, regenerate_command(rounds, args.quick))
    if md == HERE / "RESULTS.md":  # the committed results: the README shows their headline
        report.update_readme(docs, HERE.parent / "README.md")
    plots = [] if args.no_plots else report.write_plots(docs, md.parent / report.PLOTS)
    for doc_ in docs:
        if doc_["workload"]["name"] in names:
            print("\n".join(report.workload_table(doc_)))
    print(f"wrote {md}, {len(files)} JSON file(s) in {args.out}, {len(plots)} plot(s)")
    failed = [f"{w}/{i}" for w, wl in doc["workloads"].items()
              for i, row in wl["rows"].items() if row["errors"]]
    if failed:
        print(f"FAILED runs: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    return main_args(args, shlex.join(["python", "-m", "benchmarks", *argv]))


if __name__ == "__main__":
    sys.exit(main())
