"""Side-by-side benchmarks on one harness: ``python -m benchmarks [names...]``.

See ``benchmarks/README.md`` for the workload contract and ``benchmarks/RESULTS.md`` for
the latest numbers. Nothing here is a timed test.
"""
