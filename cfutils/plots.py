"""Figures of the book: one seaborn theme and one fixed colour per method in every chapter."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

# One colour per method for the whole book: colour-blind-safe "colorblind" palette first, then
# "dark", then Dark2's teal, slate and magenta (the hues furthest from those twenty), then "pastel".
_PALETTE = sns.color_palette("colorblind", 10) + sns.color_palette("dark", 10)
_PALETTE += [sns.color_palette("Dark2", 8)[i] for i in (0, 2, 3)] + sns.color_palette("pastel", 3)
METHOD_COLORS: dict[str, tuple[float, float, float]] = {
    name: _PALETTE[i] for i, name in enumerate((
        "naive", "joint", "ewc", "online_ewc", "si", "mas", "lwf", "gem", "agem", "replay",
        "der", "derpp", "generative_replay", "icarl", "prognet", "fel", "lora", "ogd", "replay_small", "l2",
        "gpm", "pcgrad", "mer", "lwf_mc", "lfl", "lwf_replay",
    ))
}
METHOD_LABELS = {"naive": "fine-tuning", "joint": "joint (upper bound)", "online_ewc": "online EWC",
                 "ewc": "EWC", "si": "SI", "mas": "MAS", "lwf": "LwF", "gem": "GEM", "agem": "A-GEM",
                 "replay": "ER", "der": "DER", "derpp": "DER++", "generative_replay": "generative replay",
                 "icarl": "iCaRL", "prognet": "Progressive Nets", "fel": "FEL", "lora": "LoRA", "ogd": "OGD"}
METHOD_LABELS |= {"gpm": "GPM", "pcgrad": "PCGrad", "mer": "MER", "lwf_mc": "LwF.MC", "lfl": "LFL",
                  "lwf_replay": "LwF + ER"}
TASK_PALETTE = "Dark2"  # distinct hues (qualitative), so neighbouring tasks are easy to tell apart


def set_theme() -> None:
    """The book's look: white grid, readable fonts at book width, no top/right spines."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95,
                  rc={"figure.dpi": 110, "savefig.dpi": 110, "axes.spines.top": False,
                      "axes.spines.right": False, "figure.autolayout": False})


def method_color(name: str) -> tuple[float, float, float]:
    """The fixed colour of a method (grey for names the book has not assigned)."""
    return METHOD_COLORS.get(name, (0.5, 0.5, 0.5))


def method_label(name: str) -> str:
    """The display name of a method."""
    return METHOD_LABELS.get(name, name)


def task_colors(n: int) -> list:
    """``n`` colours of distinct hues for tasks 1..n (:data:`TASK_PALETTE`; evenly spaced hues beyond 8)."""
    return sns.color_palette(TASK_PALETTE, n) if n <= 8 else sns.color_palette("husl", n)


def plot_accuracy_matrix(R: np.ndarray, ax: plt.Axes | None = None, title: str = "",
                         task_names: Sequence[str] | None = None, mask_upper: bool = False,
                         sd: np.ndarray | None = None) -> plt.Axes:
    """Heatmap of :math:`R_{i,j}` (row: after learning task i; column: tested on task j).

    ``mask_upper`` blanks the tasks not yet learned (:math:`j > i`); ``sd`` (same shape) writes the
    spread over seeds under each value; :func:`plot_accuracy_matrices` draws several matrices that way
    with one colour bar.
    """
    ax = ax or plt.gca()
    R = np.asarray(R)
    T = len(R)
    labels = list(task_names) if task_names is not None else [f"T{j + 1}" for j in range(T)]
    mask = np.triu(np.ones((T, T), dtype=bool), k=1) if mask_upper else None
    annot = (T <= 10) if sd is None else np.array(
        [[f"{R[i, j]:.2f}\n±{sd[i, j]:.2f}" for j in range(T)] for i in range(T)])
    sns.heatmap(R, mask=mask, vmin=0, vmax=1, cmap="rocket", annot=annot,
                fmt=".2f" if sd is None else "", square=True, cbar=False,
                xticklabels=labels, yticklabels=[f"after T{i + 1}" for i in range(T)], ax=ax,
                annot_kws={"fontsize": 7 if sd is not None else 8 if T > 5 else 9})
    ax.set_xlabel("tested on")
    ax.set_ylabel("")
    ax.set_title(title)
    ax.grid(False)
    ax.tick_params(axis="x", rotation=0)
    ax.tick_params(axis="y", rotation=0)
    return ax


def plot_task_curves(steps: Sequence[int], curves: np.ndarray, boundaries: Sequence[int],
                     ax: plt.Axes | None = None, title: str = "", task_names: Sequence[str] | None = None,
                     chance: float | None = None) -> plt.Axes:
    """Test accuracy on every task over training steps, with the task boundaries as dotted lines."""
    ax = ax or plt.gca()
    curves = np.asarray(curves)
    T = curves.shape[1]
    names = list(task_names) if task_names is not None else [f"T{j + 1}" for j in range(T)]
    for j, colour in enumerate(task_colors(T)):
        ax.plot(steps, curves[:, j], color=colour, lw=1.8, label=names[j])
    for b in boundaries[:-1]:
        ax.axvline(b, color="0.4", ls=":", lw=1)
    if chance is not None:
        ax.axhline(chance, color="0.6", ls="--", lw=1, label="chance")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8, ncol=2, frameon=True)
    return ax


def plot_method_bars(results: dict[str, dict[str, float]], metric: str, ax: plt.Axes | None = None,
                     title: str = "") -> plt.Axes:
    """One bar per method for one metric of :func:`cfutils.metrics.summary`, in the method colours."""
    ax = ax or plt.gca()
    names = list(results)
    ax.bar([method_label(n) for n in names], [results[n][metric] for n in names],
           color=[method_color(n) for n in names])
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    return ax


def plot_accuracy_matrices(matrices: dict[str, np.ndarray], axes: Sequence[plt.Axes] | None = None,
                           task_names: Sequence[str] | None = None,
                           sds: dict[str, np.ndarray] | None = None) -> list[plt.Axes]:
    """Several accuracy matrices side by side: upper triangles (tasks not yet learned) masked, one colour bar;
    ``sds`` (same keys) adds the spread over seeds under each value."""
    if axes is None:
        _, axes = plt.subplots(1, len(matrices), figsize=(3.3 * len(matrices) + 0.8, 3.4), layout="constrained")
    axes = list(np.ravel(axes))
    for ax, (title, R) in zip(axes, matrices.items()):
        plot_accuracy_matrix(R, ax=ax, title=title, task_names=task_names, mask_upper=True,
                             sd=None if sds is None else sds[title])
    for ax in axes[1:]:
        if not ax.get_subplotspec().is_first_col():
            ax.set_yticklabels([])
    mappable = plt.cm.ScalarMappable(plt.Normalize(0, 1), cmap="rocket")
    axes[0].figure.colorbar(mappable, ax=axes, label="test accuracy", shrink=0.85)
    return axes


def plot_band(ax: plt.Axes, x: Sequence[float], values: np.ndarray, color, label: str | None = None,
              **line_kw) -> plt.Axes:
    """Mean over seeds (rows of ``values``) as a line, ± one standard deviation as a band."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    mean, sd = values.mean(axis=0), values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    ax.plot(x, mean, color=color, label=label, **{"lw": 2, **line_kw})
    ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.2, lw=0)
    return ax


def plot_value_grid(values: np.ndarray, rows: Sequence, cols: Sequence, ax: plt.Axes | None = None,
                    title: str = "", row_label: str = "", col_label: str = "", label: str = "",
                    vmin: float | None = None, vmax: float | None = None, cmap: str = "viridis",
                    fmt: str = ".3f") -> plt.Axes:
    """An annotated heatmap of ``values[i, j]`` over two hyper-parameters, with a colour bar."""
    ax = ax or plt.gca()
    sns.heatmap(np.asarray(values), annot=True, fmt=fmt, cmap=cmap, vmin=vmin, vmax=vmax, ax=ax,
                xticklabels=[f"{c:g}" for c in cols], yticklabels=[f"{r:g}" for r in rows],
                cbar_kws={"label": label, "shrink": 0.85}, annot_kws={"fontsize": 8})
    ax.set(xlabel=col_label, ylabel=row_label, title=title)
    ax.tick_params(axis="y", rotation=0)
    return ax
