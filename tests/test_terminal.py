"""What a user sees on stderr from the real `multitask` process: our lines only, an error in one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

pytestmark = pytest.mark.slow


def _run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MULTITASK_HOME": str(tmp_path / "workspace")}
    for name in ("PREFECT_API_URL", "MULTITASK_DEBUG", "TF_CPP_MIN_LOG_LEVEL"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("args", "line"), [
    (["predict", "--model", "nope@champion", "{image}"], "error: no registered model 'nope@champion': "),
    (["export", "--model", "nope/1", "--format", "saved_model", "--out", "{out}"], "error: no registered model"),
    (["train", "--set", "train.epochs=0"], "error: invalid config train.epochs: "),
    (["models", "show", "nope/1"], "error: no registered model 'nope/1': "),  # loads no TensorFlow
    (["data", "build", "tfds:no_such_dataset"], "error: "),
])
def test_a_user_error_is_one_line_on_stderr_and_nothing_else(tmp_path, args, line):
    """TensorFlow writes its start-up lines to stderr before its logging exists; they are kept off."""
    Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
    done = _run(tmp_path, *(a.format(image=tmp_path / "a.png", out=tmp_path / "out") for a in args))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(line), done.stderr
