"""A folder of raw audio mixing good recordings with every kind of bad file the build must survive."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

# file name → the quarantine reason it must get (None: a good recording that must be labelled)
EXPECTED = {
    "jfk-44k-stereo.flac": None,
    "osr-8k.wav": None,
    "zz-copy-of-jfk.flac": "duplicate",
    "osr-copy.mp3": "near_duplicate",  # mp3 at 22.05 kHz, 3 dB quieter, first second cut
    "empty.wav": "empty_file",
    "truncated.flac": "truncated",
    "notes.wav": "not_audio",
    "click.wav": "too_short",
    "silence.wav": "silent",
}


def make_bad_audio_folder(folder: Path, fixtures: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    jfk = fixtures / "faster-whisper" / "jfk.flac"  # 44.1 kHz stereo
    shutil.copy(jfk, folder / "jfk-44k-stereo.flac")
    shutil.copy(fixtures / "joinly" / "OSR_us_000_0034_8k.wav", folder / "osr-8k.wav")
    shutil.copy(jfk, folder / "zz-copy-of-jfk.flac")
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-ss", "1", "-i", str(folder / "osr-8k.wav"),
                    "-af", "volume=-3dB", "-ar", "22050", "-b:a", "64k", str(folder / "osr-copy.mp3")], check=True)
    (folder / "empty.wav").write_bytes(b"")
    data = jfk.read_bytes()
    (folder / "truncated.flac").write_bytes(data[: len(data) * 2 // 5])
    (folder / "notes.wav").write_text("meeting notes: this is text, not audio\n" * 20)
    t = np.arange(int(0.2 * 16000)) / 16000
    sf.write(folder / "click.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    sf.write(folder / "silence.wav", np.zeros(10 * 16000, dtype=np.float32), 16000)
    (folder / "README.txt").write_text("not audio by name: ignored, not quarantined\n")
    return folder
