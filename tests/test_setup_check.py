"""The set-up's torch pair check (infra/check_torch_pair.py), run as `make setup` runs it.

A torchaudio that does not match its torch is simulated by a package of that name placed first
on PYTHONPATH: the real torch is imported beside it, as on a machine where torchaudio drifted."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "infra" / "check_torch_pair.py"


def _run(pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, timeout=300, env=env)


def _fake_torchaudio(tmp_path: Path, body: str) -> Path:
    package = tmp_path / "torchaudio"
    package.mkdir()
    (package / "__init__.py").write_text(body)
    return tmp_path


def test_the_locked_pair_loads_together():
    done = _run()
    assert done.returncode == 0, done.stderr
    assert "load together" in done.stdout


def test_torchaudio_of_another_release_fails_the_setup_with_one_clear_line(tmp_path):
    done = _run(_fake_torchaudio(tmp_path, '__version__ = "2.11.1"\n'))
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("set-up check failed: torch 2.11.0") and "2.11.1 are not a pair" in message
    assert "make setup" in message and "Traceback" not in done.stderr


def test_an_extension_that_does_not_load_fails_the_setup_with_one_clear_line(tmp_path):
    body = 'raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace")\n'
    done = _run(_fake_torchaudio(tmp_path, body))
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert "torchaudio does not load with torch 2.11.0" in message and "undefined symbol" in message
    assert "Traceback" not in done.stderr
