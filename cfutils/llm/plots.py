"""Figures of the LLM chapter: the learning-forgetting plane and curves over fine-tuning steps, averaged
over seeds (``runs`` maps a variant's name to its trajectories, one per seed, evaluated at the same steps).

Colours follow the book (:func:`cfutils.plots.method_color`): full fine-tuning is the book's
"fine-tuning" colour, distillation LwF's, replay ER's, EWC EWC's; LoRA variants share LoRA's colour
(darker = higher rank, dotted = with trainable embeddings, dashed = attention only); (IA)^3 and
freezing get greys.
"""
from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np

from ..plots import method_color, plot_band
from .finetune import Trajectory

BOOK_COLOUR = {"full": "naive", "replay": "replay", "ewc": "ewc", "distill": "lwf"}
LABELS = {"full": "full fine-tuning", "freeze": "freeze lower half", "ia3": "(IA)³", "replay": "replay",
          "ewc": "EWC", "distill": "distillation"}
MARKERS = {"full": "o", "freeze": "s", "ia3": "P", "replay": "D", "ewc": "^", "distill": "v"}
LORA = re.compile(r"lora(\d+)(-attn)?(-emb)?$")
Runs = dict[str, list[Trajectory]]


def label(name: str) -> str:
    """Display name of a variant: ``lora16-attn-emb`` -> ``LoRA r=16 (attention) + embeddings``."""
    m = LORA.match(name)
    if m:
        return (f"LoRA r={m.group(1)}" + (" (attention)" if m.group(2) else "")
                + (" + embeddings" if m.group(3) else ""))
    return LABELS.get(name, name)


def style(name: str) -> dict:
    """Colour, line style and marker of a variant."""
    m = LORA.match(name)
    if m:
        shade = min(1.0, 0.35 + 0.11 * np.log2(int(m.group(1))))
        colour = tuple(shade * np.asarray(method_color("lora")))
        return {"color": colour, "ls": ":" if m.group(3) else "--" if m.group(2) else "-",
                "marker": "*" if m.group(3) else "o"}
    if name in BOOK_COLOUR:
        return {"color": method_color(BOOK_COLOUR[name]), "ls": "-", "marker": MARKERS[name]}
    return {"color": {"freeze": (0.25, 0.25, 0.25), "ia3": (0.6, 0.6, 0.6)}.get(name, (0.5, 0.5, 0.5)),
            "ls": "-", "marker": MARKERS.get(name, "o")}


def series(trajs: list[Trajectory], key: str, delta: bool = True) -> np.ndarray:
    """``(seeds, evaluations)`` array of ``key`` (minus its value before fine-tuning, ``delta``)."""
    values = np.array([t.series(key) for t in trajs])
    return values - values[:, :1] if delta else values


def plot_plane(runs: Runs, names: list[str], ax: plt.Axes | None = None, title: str = "",
               learn_key: str = "b_loss", forget_key: str = "a_loss") -> plt.Axes:
    """Learning (drop of ``learn_key``) against forgetting (rise of ``forget_key``): the mean path over
    seeds of each variant; the end point carries ± one sd over seeds on both axes."""
    ax = ax or plt.gca()
    for name in names:
        s = style(name)
        x, y = -series(runs[name], learn_key), series(runs[name], forget_key)
        ax.plot(x.mean(0), y.mean(0), color=s["color"], ls=s["ls"], lw=1.4, marker=s["marker"], ms=3.5,
                label=label(name))
        sd = (lambda v: v.std(ddof=1) if len(v) > 1 else 0.0)
        ax.errorbar(x[:, -1].mean(), y[:, -1].mean(), xerr=sd(x[:, -1]), yerr=sd(y[:, -1]),
                    marker=s["marker"], ms=9, color=s["color"], mec="black", mew=0.8, ecolor="black",
                    elinewidth=0.8, capsize=2, ls="none")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("learning: drop of held-out B loss (nats)")
    ax.set_ylabel("forgetting: rise of held-out A loss (nats)")
    ax.set_title(title)
    ax.legend(fontsize=7.5, frameon=True, loc="upper left")
    return ax


def plot_over_steps(runs: Runs, names: list[str], key: str, ax: plt.Axes | None = None,
                    delta: bool = True, ylabel: str = "", title: str = "",
                    chance: float | None = None) -> plt.Axes:
    """``key`` (or its change, ``delta``) against fine-tuning steps: mean over seeds ± one sd."""
    ax = ax or plt.gca()
    for name in names:
        s = style(name)
        plot_band(ax, runs[name][0].steps, series(runs[name], key, delta), s["color"], label=label(name),
                  ls=s["ls"], marker=s["marker"], ms=3, lw=1.5)
    if chance is not None:
        ax.axhline(chance, color="0.5", ls=":", lw=1, label="chance")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel(ylabel or key)
    ax.set_title(title)
    return ax
