"""``RESULTS.md`` and the PNG plots, regenerated from the per-workload JSON files.

Each table states its own command, date and machine load, because a later run of some
workloads leaves the others' files (and numbers) as they were.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTS = "plots"


def _fmt(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _ratio(m: dict[str, Any] | None) -> str:
    r = None if m is None else m.get("ratio")
    return "—" if r is None else f"{r:.2f}×"


def _machine(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    load = "/".join(f"{x:.1f}" for x in m["loadavg"])
    end = "/".join(f"{x:.1f}" for x in doc.get("loadavg_end", m["loadavg"]))
    return (f"{doc['started']}, commit {m['commit'] or '?'}; Python {m['python']} on "
            f"{m['platform']}; {m['cpus']} × {m['cpu'] or 'CPU'}; load {load} → {end}; {vers}")


def workload_table(doc: dict[str, Any]) -> list[str]:
    wl = doc["workload"]
    base = wl["baseline"]
    impls = list(wl["impls"])
    lines = [f"## {wl['title']} (`{wl['name']}`)", ""]
    quick = " (quick)" if doc["quick"] else ""
    pinned = ""
    if doc.get("pinned") and wl.get("pinned", True):
        pinned = " (client pinned to one CPU, peers to the other, one hash seed per round)"
    lines.append(f"`{doc['command']}` — {doc['rounds']} round(s){quick}{pinned}; "
                 f"{_machine(doc)}")
    lines.append("")
    if wl["notes"]:
        lines += [wl["notes"].strip(), ""]
    lines.append(f"Median of rounds (ratio to **{base}**, median/median); "
                 "best round in the second table.")
    lines.append("")
    head = "| metric | " + " | ".join(impls) + " |"
    lines += [head, "|---|" + "---:|" * len(impls)]
    for key, metric in wl["metrics"].items():
        arrow = "↑" if metric["higher_is_better"] else "↓"
        cells = []
        for impl in impls:
            m = wl["rows"].get(impl, {}).get("metrics", {}).get(key)
            cells.append("—" if m is None else f"{_fmt(m['median'])} ({_ratio(m)})")
        lines.append(f"| {metric['title']}, {metric['unit']} {arrow} | " + " | ".join(cells) + " |")
    lines += ["", "<details><summary>best round, implementations, errors</summary>", ""]
    lines += [head, "|---|" + "---:|" * len(impls)]
    for key, metric in wl["metrics"].items():
        cells = []
        for impl in impls:
            m = wl["rows"].get(impl, {}).get("metrics", {}).get(key)
            cells.append("—" if m is None else _fmt(m["best"]))
        lines.append(f"| {metric['title']}, {metric['unit']} | " + " | ".join(cells) + " |")
    lines.append("")
    for impl, label in wl["impls"].items():
        row = wl["rows"].get(impl, {})
        extra = "; ".join(row.get("notes", []) + ([f"skipped: {row['skipped']}"]
                                                    if row.get("skipped") else []))
        errs = "; ".join(row.get("errors", []))
        lines.append(f"- **{impl}**: {label}{' — ' + extra if extra else ''}"
                     f"{' — ERRORS: ' + errs if errs else ''}")
    lines += ["", "</details>", ""]
    if wl["targets"]:
        lines.append("Targets (" + wl["subject"] + f" / {base}):")
        lines.append("")
        for t in wl["targets"]:
            verdict = "not measured" if t["met"] is None else ("met" if t["met"] else "MISSED")
            got = "—" if t["ratio"] is None else f"{t['ratio']:.2f}×"
            lines.append(f"- {t['what']}: {got}, target {t['op']} {t['limit']}× — **{verdict}**")
        lines.append("")
    lines.append(f"![{wl['name']}]({PLOTS}/{wl['name']}.png)")
    lines.append("")
    return lines


def _gevent_column(wl: dict[str, Any]) -> str | None:
    """The implementation a headline compares against: gevent as users run it."""
    for name in ("gevent", "libev-cext"):
        if name in wl["impls"]:
            return name
    return wl["baseline"]


def _cell(wl: dict[str, Any], impl: str | None, key: str) -> dict[str, Any] | None:
    return wl["rows"].get(impl, {}).get("metrics", {}).get(key) if impl else None


def headline(docs: list[dict[str, Any]]) -> list[str]:
    """The README-ready table: each workload's HEADLINE metrics, stdlib | gevent | reseau,
    ratio reseau/gevent (same unit as the row: ↑ higher is better, ↓ lower is better)
    and the workload's target for that row, if it has one."""
    lines = ["| workload | plain stdlib | gevent | reseau_patch | reseau / gevent | target |",
             "|---|---:|---:|---:|---:|---|"]
    for doc in docs:
        wl = doc["workload"]
        gev, subj = _gevent_column(wl), wl["subject"]
        targets = {t["metric"]: t for t in wl["targets"]}
        for key in wl["headline"]:
            metric = wl["metrics"][key]
            s, g, r = (_cell(wl, impl, key) for impl in ("stdlib", gev, subj))
            if r is None:
                continue
            ratio = f"{r['median'] / g['median']:.2f}×" if g and g["median"] else "—"
            t = targets.get(key)
            verdict = ""
            if t is not None:
                state = "—" if t["met"] is None else ("met" if t["met"] else "**missed**")
                verdict = f"{t['op']} {t['limit']}× {wl['baseline']}: {state}"
            arrow = "↑" if metric["higher_is_better"] else "↓"
            cells = [_fmt(x["median"]) if x else "—" for x in (s, g, r)]
            gname = "" if gev == "gevent" else f" ({gev})"
            lines.append(f"| {metric['title']}, {metric['unit']} {arrow}{gname} | "
                         + " | ".join(cells) + f" | {ratio} | {verdict} |")
    return lines


def write_markdown(docs: list[dict[str, Any]], path: Path, command: str) -> None:
    """RESULTS.md from every workload's latest JSON; ``command`` reruns all of them (each
    section names the command that measured it)."""
    lines = ["# Benchmark results", "",
             f"Regenerate everything (tables, JSON under `results/`, plots): `{command}`",
             "(`--rounds N` for more rounds, `--quick` for a smoke run, names to run a subset;",
             "see `README.md`). Each implementation runs in its own process; rounds are",
             "interleaved; numbers from a shared, loaded machine are noisy — compare ratios",
             "taken in the same run, not absolute values across runs. Unless `--no-pin`, a",
             "round's client process runs pinned to one CPU, the peers it starts to the other,",
             "and a round's processes share one hash seed (why: `harness.py`).",
             "",
             "## Headline", "",
             "<!-- headline:start (README-ready) -->"]
    lines += headline(docs)
    lines += ["<!-- headline:end -->", ""]
    for doc in docs:
        lines += workload_table(doc)
    path.write_text("\n".join(lines).rstrip() + "\n")


README_START = "<!-- headline:start (generated by python -m benchmarks) -->"
README_END = "<!-- headline:end -->"


def update_readme(docs: list[dict[str, Any]], path: Path) -> bool:
    """Replace the headline table between the README's markers (False: no markers)."""
    text = path.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    body = "\n".join([README_START, *headline(docs), ""])
    path.write_text(text[:start] + body + text[end:])
    return True


def write_plots(docs: list[dict[str, Any]], out: Path) -> list[Path]:
    """One bar chart per workload: every implementation's ratio to the baseline, per metric.

    Needs matplotlib (the ``bench`` extra); without it no plot is drawn (returns [])."""
    try:
        import matplotlib
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install -e '.[bench]')")
        return []

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for doc in docs:
        wl = doc["workload"]
        keys = list(wl["metrics"])
        impls = list(wl["impls"])
        fig, ax = plt.subplots(figsize=(8, 0.6 + 0.55 * len(keys) * max(1, len(impls) / 3)))
        height = 0.8 / max(1, len(impls))
        for i, impl in enumerate(impls):
            ys, xs = [], []
            for j, key in enumerate(keys):
                m = wl["rows"].get(impl, {}).get("metrics", {}).get(key)
                if m is not None and m.get("ratio") is not None:
                    ys.append(j + i * height)
                    xs.append(m["ratio"])
            ax.barh(ys, xs, height=height, label=impl)
        ax.axvline(1.0, color="black", linewidth=0.8)
        labels = []
        for k in keys:
            m = wl["metrics"][k]
            labels.append(f"{m['title']}\n({'↑' if m['higher_is_better'] else '↓'} {m['unit']})")
        ax.set_yticks([j + 0.4 - height / 2 for j in range(len(keys))], labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"median / {wl['baseline']} median")
        ax.set_title(wl["title"], fontsize=10)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = out / f"{wl['name']}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
