"""The harder copies of calibration gold (bench/fit_confidence.py): same names, times and truth,
more difficult audio, each kind what it says, reproducible from its seed."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.fit_confidence import HARDER, harder  # noqa: E402

SR = 16000


def _gold(folder: Path, seed: int, rate: int = SR) -> None:
    """Two files of 'speech' (tone bursts) with truth rows, as gen-audio writes them."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(2):
        x = np.zeros(3 * rate, dtype=np.float32)
        t = np.arange(rate) / rate
        x[rate:2 * rate] = 0.5 * np.sin(2 * np.pi * rng.uniform(150, 300) * t) * np.hanning(rate)
        sf.write(str(folder / f"a-{k}.wav"), x, rate, subtype="PCM_16")
        rows.append({"file": f"a-{k}.wav", "start": 1.0, "end": 2.0, "text": "a tone", "voice": "en", "speed": 150})
    (folder / "truth.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("kind", HARDER)
def test_a_harder_copy_keeps_names_times_and_truth_and_is_reproducible(tmp_path, kind):
    _gold(tmp_path / "clean", 1)
    _gold(tmp_path / "other", 2, rate=8000)  # babble from another set, at another sample rate
    harder(tmp_path / "clean", tmp_path / "hard", 7, kind, babble_from=tmp_path / "other")
    harder(tmp_path / "clean", tmp_path / "again", 7, kind, babble_from=tmp_path / "other")
    assert (tmp_path / "hard" / "truth.jsonl").read_text() == (tmp_path / "clean" / "truth.jsonl").read_text()
    for f in sorted((tmp_path / "clean").glob("*.wav")):
        x, sr = sf.read(str(f), dtype="float32")
        y, sr2 = sf.read(str(tmp_path / "hard" / f.name), dtype="float32")
        assert sr2 == sr and len(y) == len(x)
        assert np.array_equal(y, sf.read(str(tmp_path / "again" / f.name), dtype="float32")[0]), "same seed, same copy"
        silence = np.abs(y[:SR // 2]).mean()
        assert silence > 1e-4, "the silence before the speech is no longer silent"
        if kind == "clipped":
            burst = y[SR + SR // 4:2 * SR - SR // 4]
            assert np.mean(np.abs(burst) > 0.9 * np.abs(burst).max()) > 0.2, "overdriven: flat tops"


def test_an_unknown_kind_is_no_copy(tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "bench" / "fit_confidence.py"),
                           "--harder", "noisier,thunder", "--work", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown kind(s) thunder" in done.stderr
