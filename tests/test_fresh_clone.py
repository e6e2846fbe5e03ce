"""`make test` on a user's fresh clone (no ../shared/data) passes, skipping the data tests with a reason; in CI
(CFT_REQUIRE_SHARED_DATA=1, set by .ci/run) a data test that cannot find its data fails instead."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from conftest import REPO, REQUIRE_SHARED_DATA, check_shared_data


def test_missing_shared_data_skips_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.delenv(REQUIRE_SHARED_DATA, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"needs the shared data \(nli under .*\), which the repository"):
        check_shared_data(("nli",), root=tmp_path)
    (tmp_path / "nli").mkdir()
    check_shared_data(("nli",), root=tmp_path)  # present: the test runs


def test_missing_shared_data_fails_when_ci_requires_it(tmp_path, monkeypatch):
    monkeypatch.setenv(REQUIRE_SHARED_DATA, "1")
    with pytest.raises(pytest.fail.Exception, match=rf"needs the shared data .*{REQUIRE_SHARED_DATA}=1 requires it"):
        check_shared_data(("sts",), root=tmp_path)


def _marked(decorators: list[ast.expr]) -> bool:
    names = {ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in decorators}
    return bool(names & {"needs_shared_data", "needs_data", "pytest.mark.shared_data"})


def test_every_test_that_reads_the_shared_data_is_marked():
    """A test naming SHARED_DATA without the mark would fail on a fresh clone instead of skipping."""
    unmarked = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and not _marked(node.decorator_list):
                if any(isinstance(n, ast.Name) and n.id == "SHARED_DATA" for n in ast.walk(node)):
                    unmarked.append(f"{path.name}::{node.name}")
    assert not unmarked, f"mark these with @needs_shared_data(...): {unmarked}"


def test_the_quality_dry_run_skips_on_a_fresh_clone(tmp_path):
    """The test that failed on a fresh clone ("no shared data folder found"), run as `make test` runs it there."""
    test = "tests/test_benchmarks.py::test_quality_run_dry_run_tunes_on_dev_then_evaluates_the_eight_tasks"
    env = {**os.environ, "CFT_SHARED_DATA": str(tmp_path / "no-data")}
    env.pop(REQUIRE_SHARED_DATA, None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "1 skipped" in done.stdout, done.stdout[-2000:]
    assert "needs the shared data (nli, sts under" in done.stdout


def test_ci_requires_the_shared_data_before_running_the_readme_command():
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert lines.index(f"export {REQUIRE_SHARED_DATA}=1") < lines.index("make test")
