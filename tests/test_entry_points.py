"""Every command a user types answers a mistake the same way: one `error:` line, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.strategies.launch import ROOT

COMMANDS = {
    "fit": (["-m", "medzero_pl.fit", "grpo.no_such_key=1"], "grpo.no_such_key"),
    "lightning-cli": (["-m", "medzero_pl", "fit", "--config", "missing.yaml"], "missing.yaml"),
    "eval": (["-m", "medzero_pl.eval", "--model", "m", "--benchmarks", "medqa", "--max-new-tokens", "0"], "max_new"),
    "export": (["-m", "medzero_pl.export", "missing.ckpt", "out"], "missing.ckpt"),
    "serve": (["-m", "medzero_pl.serve", "/no/such/model"], "/no/such/model"),
    "server_layout": (["-m", "medzero_pl.server_layout", "--dry-run", "grpo.no_such_key=1"], "grpo.no_such_key"),
}


@pytest.mark.slow  # six fresh interpreters importing torch and Lightning: ~30 s on a quiet machine
@pytest.mark.parametrize("name", COMMANDS)
def test_a_bad_argument_is_one_error_line_and_exit_code_2(name, tmp_path):
    argv, named = COMMANDS[name]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:") or ": error:" in line]
    assert len(errors) == 1 and named in errors[0], done.stderr
