"""Figures of the LLM chapter: the learning-forgetting plane and curves over fine-tuning steps.

Colours follow the book (:func:`cfutils.plots.method_color`): full fine-tuning is the book's
"fine-tuning" colour, distillation LwF's, replay ER's, EWC EWC's; LoRA variants share LoRA's colour
(darker = higher rank, dashed = attention only); (IA)^3 and freezing get greys.
"""
from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np

from ..plots import method_color
from .finetune import Trajectory

BOOK_COLOUR = {"full": "naive", "replay": "replay", "ewc": "ewc", "distill": "lwf"}
LABELS = {"full": "full fine-tuning", "freeze": "freeze lower half", "ia3": "(IA)³", "replay": "replay",
          "ewc": "EWC", "distill": "distillation"}
MARKERS = {"full": "o", "freeze": "s", "ia3": "P", "replay": "D", "ewc": "^", "distill": "v"}


def label(name: str) -> str:
    """Display name of a variant: ``lora16-attn`` -> ``LoRA r=16 (attention)``."""
    m = re.match(r"lora(\d+)(-attn)?$", name)
    if m:
        return f"LoRA r={m.group(1)}" + (" (attention)" if m.group(2) else "")
    return LABELS.get(name, name)


def style(name: str) -> dict:
    """Colour, line style and marker of a variant."""
    m = re.match(r"lora(\d+)(-attn)?$", name)
    if m:
        shade = min(1.0, 0.45 + 0.15 * np.log2(int(m.group(1))))
        colour = tuple(shade * np.asarray(method_color("lora")))
        return {"color": colour, "ls": "--" if m.group(2) else "-", "marker": "o"}
    if name in BOOK_COLOUR:
        return {"color": method_color(BOOK_COLOUR[name]), "ls": "-", "marker": MARKERS[name]}
    return {"color": {"freeze": (0.25, 0.25, 0.25), "ia3": (0.6, 0.6, 0.6)}.get(name, (0.5, 0.5, 0.5)),
            "ls": "-", "marker": MARKERS.get(name, "o")}


def deltas(traj: Trajectory, key: str) -> np.ndarray:
    """``key`` along the run minus its value before fine-tuning."""
    values = np.array(traj.series(key))
    return values - values[0]


def plot_plane(trajs: list[Trajectory], ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """Learning (drop of held-out B loss) against forgetting (rise of held-out A loss), one path per run."""
    ax = ax or plt.gca()
    for t in trajs:
        s = style(t.name)
        ax.plot(-deltas(t, "b_loss"), deltas(t, "a_loss"), color=s["color"], ls=s["ls"], lw=1.4, alpha=0.9,
                marker=s["marker"], ms=3.5, label=label(t.name))
        ax.plot(-deltas(t, "b_loss")[-1], deltas(t, "a_loss")[-1], marker=s["marker"], ms=9, color=s["color"],
                mec="black", mew=0.8, ls="none")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("learning: drop of held-out B loss (nats)")
    ax.set_ylabel("forgetting: rise of held-out A loss (nats)")
    ax.set_title(title)
    ax.legend(fontsize=7.5, frameon=True, loc="upper left")
    return ax


def plot_over_steps(trajs: list[Trajectory], key: str, ax: plt.Axes | None = None, delta: bool = True,
                    ylabel: str = "", title: str = "", chance: float | None = None) -> plt.Axes:
    """``key`` (or its change, ``delta``) against fine-tuning steps, one line per run."""
    ax = ax or plt.gca()
    for t in trajs:
        s = style(t.name)
        y = deltas(t, key) if delta else np.array(t.series(key))
        ax.plot(t.steps, y, color=s["color"], ls=s["ls"], lw=1.5, marker=s["marker"], ms=3, label=label(t.name))
    if chance is not None:
        ax.axhline(chance, color="0.5", ls=":", lw=1, label="chance")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel(ylabel or key)
    ax.set_title(title)
    return ax


def plot_trainable(trajs: list[Trajectory], ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """Trainable parameters of every run (log scale)."""
    ax = ax or plt.gca()
    names = [label(t.name) for t in trajs]
    ax.barh(names, [t.trainable for t in trajs], color=[style(t.name)["color"] for t in trajs])
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_title(title)
    for i, t in enumerate(trajs):
        ax.text(t.trainable * 1.1, i, f"{t.trainable:,}", va="center", fontsize=7.5)
    return ax
