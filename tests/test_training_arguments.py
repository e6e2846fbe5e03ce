"""Every `train` setting of a recipe reaches the Trainer, or is documented as going somewhere else."""

from dataclasses import fields

from cft.config import TrainSettings
from cft.training.arguments import NOT_FOR_TRAINER, RESOLVED_FIELDS, TRAINER_FIELDS, training_arguments

# A value unlike every default, per TrainSettings field passed through as it is.
CHANGED = {"learning_rate": 1.23e-4, "lr_scheduler": "linear", "warmup_steps": 7, "weight_decay": 0.01,
           "num_epochs": 3.0, "max_steps": 11, "batch_size": 5, "max_grad_norm": 0.5, "save_steps": 9,
           "logging_steps": 3, "seed": 7, "dataloader_workers": 0}


def test_every_train_setting_has_one_destination():
    names = {f.name for f in fields(TrainSettings)}
    routes = [set(TRAINER_FIELDS), set(RESOLVED_FIELDS), set(NOT_FOR_TRAINER)]
    assert set.union(*routes) == names, "a TrainSettings field nobody reads, or a route to a field that is gone"
    assert sum(len(route) for route in routes) == len(names), "a field with two destinations"
    assert set(CHANGED) == set(TRAINER_FIELDS)


def test_trainer_settings_reach_training_arguments(tmp_path):
    settings = TrainSettings(**CHANGED, bf16=False, report_to="none")
    args = training_arguments(settings, tmp_path / "checkpoints")
    for name, target in TRAINER_FIELDS.items():
        got = getattr(args, target)
        got = getattr(got, "value", got)  # enums (the scheduler) compare by their value
        assert got == CHANGED[name], f"train.{name} -> TrainingArguments.{target}"
    assert args.bf16 is False and args.report_to == []
    assert args.save_total_limit is None  # retention is CheckpointSync's, after the successor is complete
    assert args.output_dir == str(tmp_path / "checkpoints")
