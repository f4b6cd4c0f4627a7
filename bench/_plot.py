"""The one plotting helper of the benches: a PNG under bench/results/, next to the table the bench prints.

matplotlib is an optional extra (`pip install -e ".[plot]"`). Without it the bench prints its tables all
the same and `save_plot` returns the one line saying the plot was skipped.
"""

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def save_plot(
    name: str,
    *,
    lines: dict[str, tuple[list[float], list[float]]] | None = None,
    bars: dict[str, float] | None = None,
    title: str,
    xlabel: str,
    ylabel: str,
    xscale: str = "linear",
    yscale: str = "linear",
) -> str:
    """Draws `lines` ({label: (xs, ys)}, one curve with markers each) or `bars` ({label: height}, values
    written on the bars) into bench/results/`name`; returns the line for the bench to print."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return f'plot skipped: matplotlib is not installed (pip install -e ".[plot]"), bench/results/{name} not written'
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    for label, (xs, ys) in (lines or {}).items():
        axis.plot(xs, ys, marker="o", label=label)
    axis.set(title=title, xlabel=xlabel, ylabel=ylabel, xscale=xscale, yscale=yscale)
    if bars:
        drawn = axis.bar(range(len(bars)), list(bars.values()), color=[f"C{i}" for i in range(len(bars))])
        axis.bar_label(drawn, fmt="%.1f")
        axis.set_xticks(range(len(bars)), labels=list(bars))
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")  # 200, not 2 x 10^2, on log axes
    if yscale == "log":
        axis.yaxis.set_major_formatter(plain)
        axis.yaxis.set_minor_formatter(plain)
    if xscale == "log":  # a sweep: one labelled tick per measured x
        axis.set_xticks(sorted({x for xs, _ in (lines or {}).values() for x in xs}))
        axis.xaxis.set_major_formatter(plain)
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.grid(True, axis="y" if bars else "both", which="both", alpha=0.3)
    if lines:
        axis.legend()
    figure.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    figure.savefig(RESULTS / name, dpi=100)
    plt.close(figure)
    return f"plot: bench/results/{name}"
