"""The training curve: loss and learning rate against step, readable at a glance."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_training(log_history: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Writes a PNG with the loss (left axis) and learning rate (right axis); None when nothing was logged."""
    points = [(entry["step"], entry["loss"], entry.get("learning_rate")) for entry in log_history
              if "loss" in entry and "step" in entry]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p[0] for p in points]
    figure, loss_axis = plt.subplots(figsize=(8, 4.5), dpi=120)
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
    loss_axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
