"""The training curve: loss and learning rate against step and, with a dev set, the dev score beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cft.training.dev_eval import SCORE_KEY as DEV_SCORE_KEY


def plot_training(log_history: list[dict[str, Any]], path: Path, title: str,
                  best_step: int | None = None) -> Path | None:
    """Writes a PNG with the loss (left axis) and learning rate (right axis), and a second panel with the dev score
    (Spearman x100) when one was logged, the best one marked; None when nothing was logged."""
    points = [(entry["step"], entry["loss"], entry.get("learning_rate")) for entry in log_history
              if "loss" in entry and "step" in entry]
    dev = [(entry["step"], entry[DEV_SCORE_KEY]) for entry in log_history if DEV_SCORE_KEY in entry and "step" in entry]
    if not points and not dev:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if dev:
        figure, (loss_axis, dev_axis) = plt.subplots(1, 2, figsize=(13, 4.5), dpi=120, sharex=True)
        _plot_dev(dev_axis, dev, best_step)
    else:
        figure, loss_axis = plt.subplots(figsize=(8, 4.5), dpi=120)
    _plot_loss(loss_axis, points)
    figure.suptitle(title) if dev else loss_axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _plot_loss(loss_axis: Any, points: list[tuple[int, float, float | None]]) -> None:
    steps = [p[0] for p in points]
    loss_axis.plot(steps, [p[1] for p in points], color="tab:blue", marker="o", markersize=3, label="InfoNCE loss")
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_ylabel("training loss (InfoNCE, nats)", color="tab:blue")
    loss_axis.grid(alpha=0.3)
    lr_points = [(p[0], p[2]) for p in points if p[2] is not None]
    if lr_points:
        lr_axis = loss_axis.twinx()
        lr_axis.plot([p[0] for p in lr_points], [p[1] for p in lr_points], color="tab:orange", linestyle="--",
                     label="learning rate")
        lr_axis.set_ylabel("learning rate", color="tab:orange")
        lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        handles = loss_axis.get_lines() + lr_axis.get_lines()
        loss_axis.legend(handles, [line.get_label() for line in handles], loc="upper right", frameon=False)


def _plot_dev(axis: Any, dev: list[tuple[int, float]], best_step: int | None) -> None:
    axis.plot([p[0] for p in dev], [p[1] for p in dev], color="tab:green", marker="o", markersize=3,
              label="dev score")
    best = [p for p in dev if p[0] == best_step]
    if best:
        axis.plot([best[0][0]], [best[0][1]], marker="*", markersize=14, color="tab:red", linestyle="none",
                  label=f"best: {best[0][1]:.2f} at step {best[0][0]}")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("dev score (Spearman x100 of cosine)", color="tab:green")
    axis.grid(alpha=0.3)
    axis.legend(loc="best", frameon=False)
