"""``python -m benchmarks.child WORKLOAD IMPL PART [--quick]``: one run, one JSON line.

Kept apart from the harness so nothing but the stdlib basics, ``impls`` and ``registry``
is imported before the implementation patches (gevent and reseau_patch both want to be
first: no ``subprocess``/``threading``/``ssl`` import before that).
"""

from __future__ import annotations

import importlib
import json
import sys
import time


def run_child(workload: str, impl: str, quick: bool, part: str) -> int:
    """Patch as ``impl`` says, import the workload, run it, print one JSON line."""
    from benchmarks import impls
    from benchmarks.registry import PATCHES_ITSELF, WORKLOADS

    # Before the workload module (and what it imports) is loaded. A workload whose run()
    # patches by itself, or whose implementations are other processes (names only in its
    # LABELS), gets nothing patched here.
    if impl in impls.IMPLS and workload not in PATCHES_ITSELF:
        impls.prepare(impl)
    mod = importlib.import_module(WORKLOADS[workload])
    t0 = time.perf_counter()
    out = mod.run(impl, quick, part)
    note = out.pop("note", "")
    values = {k: float(v) for k, v in out.items()}
    info = impls.describe(impl) if impl in impls.IMPLS else {}
    print(json.dumps({"values": values, "note": note, "info": info,
                      "seconds": time.perf_counter() - t0}), flush=True)
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--quick"]
    if len(args) != 3:
        raise SystemExit("usage: python -m benchmarks.child WORKLOAD IMPL PART [--quick]")
    sys.exit(run_child(args[0], args[1], "--quick" in sys.argv,
                       "" if args[2] == "-" else args[2]))
