"""A SIGTERM (what a preemption sends) is recorded as an interruption that the registry shows, and is not final."""

import json
import os
import signal

import pytest
from transformers import TrainerCallback

from cft.cli.main import main
from cft.config import load_recipe
from cft.registry.runs import list_runs
from cft.storage.bucket import open_bucket
from cft.training.run import train
from conftest import tiny_recipe_yaml


@pytest.fixture
def sigterm_guard():
    """Outside cft's own handling, a SIGTERM fails the test instead of killing pytest."""
    def unhandled(signum, frame):
        raise AssertionError("SIGTERM reached the default handler: the run would die without a record")

    previous = signal.signal(signal.SIGTERM, unhandled)
    yield
    signal.signal(signal.SIGTERM, previous)


class SigtermAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_is_recorded_as_interrupted_and_the_next_start_resumes(tmp_path, tiny_model_dir, triplets_csv,
                                                                       sigterm_guard, capsys):
    from cft.training.interrupt import RunInterrupted, sigterm_interrupts

    recipe = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=30)
    bucket = tmp_path / "bucket"
    with pytest.raises(RunInterrupted), sigterm_interrupts():
        train(load_recipe(recipe), str(recipe), output=str(bucket), run_id="pre", extra_callbacks=[SigtermAt(15)])
    status = json.loads((bucket / "runs" / "pre" / "status.json").read_text())
    assert (status["status"], status["step"], status["signal"]) == ("interrupted", 15, "SIGTERM")
    assert not (bucket / "runs" / "pre" / "manifest.json").exists()  # not final
    [record] = list_runs(open_bucket(bucket))
    assert record.status == "interrupted"
    assert "interrupted by SIGTERM at step 15" in record.reason

    result = train(load_recipe(recipe), str(recipe), output=str(bucket), run_id="pre")
    assert result.manifest.resumed_from_step == 10 and result.manifest.status == "succeeded"
    assert list_runs(open_bucket(bucket))[0].status == "succeeded"


def test_cft_train_exits_143_with_one_line_on_sigterm(tmp_path, tiny_model_dir, triplets_csv, sigterm_guard,
                                                      monkeypatch, capsys):
    import cft.data.triplets

    original = cft.data.triplets.load_triplets

    def load_then_sigterm(*args, **kwargs):  # the signal arrives while the run prepares its data
        os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(cft.data.triplets, "load_triplets", load_then_sigterm)
    recipe = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv)
    code = main(["train", "--config", str(recipe), "--bucket", str(tmp_path / "bucket"), "--run-id", "pre"])
    assert code == 143
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("cft: interrupted by SIGTERM; the next start")
    status = json.loads((tmp_path / "bucket" / "runs" / "pre" / "status.json").read_text())
    assert status["status"] == "interrupted"
