"""Run ids from every source are one safe path segment, or `cft train` stops with one line before writing."""

import pytest

from cft.cli.main import main
from conftest import tiny_recipe_yaml


@pytest.mark.parametrize(("flag", "env"), [(["--run-id", ".."], {}), (["--run-id", "."], {}), ([], {"RUN_ID": "a/../b"}),
                                           ([], {"SKYPILOT_TASK_ID": "../x"})])
def test_unsafe_run_id_exits_2_with_one_line_and_writes_nothing(flag, env, tmp_path, tiny_model_dir, triplets_csv,
                                                                monkeypatch, capsys):
    for name in ("RUN_ID", "SKYPILOT_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    recipe = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv)
    output = tmp_path / "out" / "bucket"
    assert main(["train", "--config", str(recipe), "--bucket", str(output), *flag]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("cft: error: ") and "is not a valid run id" in err
    assert not (tmp_path / "out").exists()


def test_notify_run_refuses_an_unsafe_run_id(tmp_path, capsys):
    from notify.__main__ import main as notify_main

    assert notify_main(["run", "--run-id", "..", "--log-dir", str(tmp_path), "--", "true"]) == 2
    assert "is not a valid run id" in capsys.readouterr().err
