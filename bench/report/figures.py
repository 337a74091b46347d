"""The report's figures, drawn from a results document (matplotlib, Agg, PNG).

- throughput (tokens/s) against H (cases with I = H) and against B, one line per
  implementation, a panel per mode and cell, a figure per core budget;
- the GRU/LSTM time ratio per implementation beside the 3/4 ratio of their FLOPs;
- training peak memory against T per implementation, beside the bytes BPTT must keep.

The figures draw the sweeps, whose layers are one layer, one direction, every sequence T
long; the stacked, bidirectional and variable-length cases are tabled only. A sweep is drawn
at one context (the other sizes held fixed): the one with the most points, named in the
title. Error bars are the 95% intervals of the medians (two-stage bootstrap
over the worker processes and their samples). The figures
use matplotlib's object API with the Agg canvas, so nothing opens a window or touches the
global pyplot state.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.report.analysis import GRU_LSTM_FLOP_RATIO, core_budget, gru_lstm_pairs, ok_entries
from bench.speed.cases import Case

MIB = 2 ** 20


def _colors(names) -> dict[str, str]:
    palette = [f"C{i}" for i in range(10)]
    return {name: palette[i % 10] for i, name in enumerate(sorted(names))}


def _new_figure(rows: int, cols: int, width: float = 4.2, height: float = 3.2):
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _by_setting(records):
    """Records by device, dtype and core budget: a figure never mixes them."""
    groups = defaultdict(list)
    for r in records:
        c = r["case"]
        groups[(c["device"], c["dtype"], c["threads"])].append(r)
    return groups


def _sweep(records, axis: str, context_fields: tuple[str, ...], keep=lambda c: True):
    """Records of the context with the most distinct `axis` values (then the most records)."""
    contexts = defaultdict(list)
    for r in records:
        c = r["case"]
        if keep(c):
            contexts[tuple(c[f] for f in context_fields)].append(r)
    scored = [(len({r["case"][axis] for r in rs}), len(rs), ctx) for ctx, rs in contexts.items()]
    scored = [s for s in scored if s[0] >= 2]
    if not scored:
        return None, []
    _, _, best = max(scored)
    return dict(zip(context_fields, best)), contexts[best]


def _label_points(ax, values) -> None:
    """Tick the measured sizes themselves, in plain numbers, on a log axis."""
    ax.set_xticks(values, [str(v) for v in values])
    ax.minorticks_off()


def _setting(record: dict) -> str:
    c = record["case"]
    return f"{c['device']}, {c['dtype']}, {core_budget(c, None)}"


def _title_context(context: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in context.items())


def _throughput(records, axis, context_fields, keep, path: Path, what: str,
                colors) -> Path | None:
    context, chosen = _sweep(records, axis, context_fields, keep)
    if not chosen:
        return None
    modes = sorted({r["case"]["mode"] for r in chosen})
    cells = sorted({r["case"]["cell"] for r in chosen})
    fig, axes = _new_figure(len(modes), len(cells))
    for i, mode in enumerate(modes):
        for j, cell in enumerate(cells):
            ax = axes[i][j]
            lines = defaultdict(list)
            for r in chosen:
                c = r["case"]
                if c["mode"] != mode or c["cell"] != cell:
                    continue
                for name, e in ok_entries(r):
                    tokens = Case.from_dict(c).tokens
                    lo, hi = tokens / e["time"]["ci95"][1], tokens / e["time"]["ci95"][0]
                    lines[name].append((c[axis], e["tokens_per_s"], lo, hi))
            for name, pts in sorted(lines.items()):
                pts.sort()
                x, y, lo, hi = zip(*pts)
                ax.errorbar(x, y, yerr=[[max(0.0, a - b) for a, b in zip(y, lo)],
                                        [max(0.0, b - a) for a, b in zip(y, hi)]],
                            marker="o", capsize=2, label=name, color=colors[name])
            ax.set_xscale("log", base=2)
            _label_points(ax, sorted({r["case"][axis] for r in chosen}))
            ax.set_yscale("log")
            ax.set_title(f"{cell} {mode}")
            ax.set_xlabel(axis)
            ax.set_ylabel("tokens/s (T*B per second)")
            ax.grid(True, which="both", alpha=0.3)
            if lines:
                ax.legend(fontsize="small")
    fig.suptitle(f"Throughput vs {what}\n{_setting(chosen[0])}; {_title_context(context)}")
    fig.savefig(path, dpi=100)
    return path


def _gru_lstm(records, path: Path, colors) -> Path | None:
    pairs = gru_lstm_pairs(records)
    if not pairs:
        return None
    modes = sorted({p["mode"] for p in pairs})
    fig, axes = _new_figure(len(modes), 1, width=max(6.0, 1.2 * len(pairs) / len(modes) + 3))
    for i, mode in enumerate(modes):
        ax = axes[i][0]
        rows = [p for p in pairs if p["mode"] == mode]
        contexts = sorted({p["context"] for p in rows})
        names = sorted({p["impl"] for p in rows})
        width = 0.8 / len(names)
        for k, name in enumerate(names):
            xs, ys, err = [], [], [[], []]
            for x, ctx in enumerate(contexts):
                for p in rows:
                    if p["impl"] == name and p["context"] == ctx:
                        xs.append(x + (k - (len(names) - 1) / 2) * width)
                        ys.append(p["ratio"])
                        err[0].append(max(0.0, p["ratio"] - p["ci95"][0]))
                        err[1].append(max(0.0, p["ci95"][1] - p["ratio"]))
            ax.bar(xs, ys, width=width, yerr=err, capsize=2, label=name, color=colors[name])
        ax.axhline(GRU_LSTM_FLOP_RATIO, color="black", linestyle="--", label="FLOP ratio 3/4")
        ax.axhline(1.0, color="gray", linewidth=0.8)
        ax.set_xticks(range(len(contexts)),
                      [f"T{c[0]} B{c[1]}\nI{c[2]} H{c[3]}" for c in contexts], fontsize="small")
        ax.set_ylabel("GRU time / LSTM time")
        ax.set_title(mode)
        ax.legend(fontsize="small")
    fig.suptitle(f"GRU/LSTM time ratio\n{_setting(records[0])}")
    fig.savefig(path, dpi=100)
    return path


def _memory(records, path: Path, colors) -> Path | None:
    def measured(c):
        return c["mode"] == "training"

    context, chosen = _sweep(records, "T", ("B", "I", "H"), measured)
    points = defaultdict(list)
    keep = defaultdict(dict)
    for r in chosen:
        c = r["case"]
        keep[c["cell"]][c["T"]] = r["must_keep_bytes"] / MIB
        for name, e in ok_entries(r):
            fresh = e.get("fresh_process") or {}
            if fresh.get("status") == "ok" and fresh.get("peak_bytes") is not None:
                points[(c["cell"], name)].append((c["T"], fresh["peak_bytes"] / MIB))
    if not points:
        return None
    cells = sorted({cell for cell, _ in points})
    fig, axes = _new_figure(1, len(cells))
    for j, cell in enumerate(cells):
        ax = axes[0][j]
        for (c, name), pts in sorted(points.items()):
            if c == cell:
                x, y = zip(*sorted(pts))
                ax.plot(x, y, marker="o", label=name, color=colors[name])
        x, y = zip(*sorted(keep[cell].items()))
        ax.plot(x, y, linestyle="--", color="black", label="BPTT must keep")
        ax.set_xscale("log")
        _label_points(ax, sorted(keep[cell]))
        ax.set_yscale("log")
        ax.set_title(f"{cell} training")
        ax.set_xlabel("T")
        ax.set_ylabel("peak memory increase (MiB)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"Training peak memory vs T\n{_setting(chosen[0])}; "
                 f"{_title_context(context)}")
    fig.savefig(path, dpi=100)
    return path


def draw(data: dict, out_dir: Path) -> list[tuple[str, Path]]:
    """Every figure the results support, as (caption, path) pairs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = _colors(data["plan"]["implementations"])
    drawn = []
    sweeps = [r for r in data["cases"] if not Case.from_dict(r["case"]).variant]
    for (device, dtype, threads), records in sorted(_by_setting(sweeps).items()):
        tag = f"{device}-{dtype}-t{threads}"
        for caption, path in (
            (f"Throughput vs H (I = H), {tag}",
             _throughput(records, "H", ("T", "B"), lambda c: c["I"] == c["H"],
                         out_dir / f"throughput_vs_H-{tag}.png", "H (I = H)", colors)),
            (f"Throughput vs B, {tag}",
             _throughput(records, "B", ("T", "I", "H"), lambda c: True,
                         out_dir / f"throughput_vs_B-{tag}.png", "B", colors)),
            (f"GRU/LSTM time ratio, {tag}",
             _gru_lstm(records, out_dir / f"gru_lstm_ratio-{tag}.png", colors)),
            (f"Training peak memory vs T, {tag}",
             _memory(records, out_dir / f"memory_vs_T-{tag}.png", colors)),
        ):
            if path is not None:
                drawn.append((caption, path))
    return drawn
