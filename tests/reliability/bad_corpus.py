"""A generator of bad input: one folder with good recordings beside every kind of bad file,
special file and bad name the build must contain (quarantine or defer with a specific reason,
never crash, never hang).

Every name starts with a tag ``kNN-`` so a row can be matched to its kind whatever happened to
its name. ``KINDS`` maps the tag to (what it is, the expected outcome): ``"ok"`` (a recording;
labelled), a quarantine reason, or ``"deferred:<reason>"``.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
MAX_BYTES = 12 * 1024 * 1024  # the test build's ingest.max_bytes, so k33 is too_large


def _tone(seconds: float, rate: int = RATE, freq: float = 300.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _wav(data: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def _ffmpeg(*args: str) -> bytes:
    return subprocess.run(["ffmpeg", "-loglevel", "error", *args, "-"], check=True, capture_output=True).stdout


def _flac_declaring(seconds: float) -> bytes:
    """A one-second FLAC whose STREAMINFO says it lasts ``seconds`` (total samples patched)."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000, np.float32), 8000, format="FLAC", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    assert data[:4] == b"fLaC"
    start = 8 + 10  # "fLaC", block header, then 10 bytes of block/frame sizes
    packed = struct.unpack(">Q", bytes(data[start:start + 8]))[0]
    packed = (packed & ~((1 << 36) - 1)) | int(seconds * 8000)
    data[start:start + 8] = struct.pack(">Q", packed)
    return bytes(data[:start + 8] + bytes(16) + data[start + 8 + 16:])  # MD5 zeroed (unknown)


def _long_silence_flac(path: Path, seconds: int) -> None:
    with sf.SoundFile(path, "w", samplerate=RATE, channels=1, format="FLAC", subtype="PCM_16") as out:
        block = np.zeros(RATE * 60, np.float32)
        for _ in range(seconds // 60):
            out.write(block)


def _patch_wav_data_size(data: bytes, size: int) -> bytes:
    out = bytearray(data)
    i = out.find(b"data")
    out[i + 4:i + 8] = struct.pack("<I", size)
    return bytes(out)


def is_root() -> bool:
    return os.geteuid() == 0


# tag -> (description, expected outcome)
KINDS: dict[str, tuple[str, str]] = {
    "k01": ("good recording (44.1 kHz stereo FLAC)", "ok"),
    "k02": ("good WAV with a wrong extension (.ogg)", "ok"),
    "k03": ("8 channels of speech", "ok"),
    "k04": ("byte copy of k01", "duplicate"),
    "k05": ("k01 resampled to 384 kHz", "near_duplicate"),
    "k06": ("zero bytes", "empty_file"),
    "k07": ("WAV header cut at 20 bytes", "not_audio"),
    "k08": ("WAV header with no samples", "too_short"),
    "k09": ("FLAC body truncated at 40 %", "truncated"),
    "k10": ("text file named .wav", "not_audio"),
    "k11": ("random bytes named .flac", "not_audio"),
    "k12": ("MP4 with only a video stream", "no_audio_stream"),
    "k13": ("WAV at 1 Hz (4 h of 'audio' in 32 KB)", "unsupported_sample_rate"),
    "k14": ("one hour of silence (FLAC)", "silent"),
    "k15": ("FLAC whose header declares 5 hours", "too_long"),
    "k16": ("float WAV with NaN samples", "non_finite_samples"),
    "k17": ("float WAV with +Inf samples", "non_finite_samples"),
    "k18": ("float WAV with -Inf samples", "non_finite_samples"),
    "k19": ("WAV whose data chunk declares 10x its length (a tone)", "ok"),
    "k20": ("WAV whose data chunk declares 0.1 s of 3 s", "too_short"),
    "k21": ("MP3 with 20 KB of garbage appended", "truncated"),
    "k22": ("0.2 s click", "too_short"),
    "k23": ("directory named .wav", "special_file"),
    "k24": ("FIFO named .wav", "special_file"),
    "k25": ("Unix socket named .wav", "special_file"),
    "k26": ("symlink to /dev/null", "special_file"),
    "k27": ("symlink to /dev/zero", "special_file"),
    "k28": ("symlink loop", "special_file"),
    "k29": ("broken symlink", "special_file"),
    "k30": ("name that is not valid UTF-8", "bad_name"),
    "k31": ("name ending with a newline", "bad_name"),
    "k32": ("path over 1024 bytes", "bad_name"),
    "k33": ("file over ingest.max_bytes", "too_large"),
    "k34": ("pure white noise (a recording; nothing in it is speech)", "ok"),
    "k35": ("file the build may not read (mode 000)", "ok" if is_root() else "deferred:unreadable"),
    "k36": ("10 s of digital silence (WAV)", "silent"),
}
GOOD_SPEECH = {"k01", "k02", "k03"}  # must be labelled, with segments in the manifest


def make_bad_corpus(folder: Path, fixtures: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    jfk = fixtures / "faster-whisper" / "jfk.flac"
    shutil.copy(jfk, folder / "k01-jfk.flac")
    shutil.copy(fixtures / "DeepSpeech" / "arctic_a0024.wav", folder / "k02-arctic.ogg")
    speech, rate = sf.read(fixtures / "leopard" / "test.wav", dtype="float32")
    sf.write(folder / "k03-eight-channels.wav", np.repeat(speech[:, None], 8, axis=1) * 0.5, rate, subtype="PCM_16")
    shutil.copy(jfk, folder / "k04-copy.flac")
    (folder / "k05-jfk-384k.wav").write_bytes(_ffmpeg("-i", str(jfk), "-ar", "384000", "-ac", "1", "-f", "wav"))
    (folder / "k06-zero.wav").write_bytes(b"")
    tone_wav = _wav(_tone(3.0))
    (folder / "k07-header-cut.wav").write_bytes(tone_wav[:20])
    (folder / "k08-header-only.wav").write_bytes(_patch_wav_data_size(tone_wav[:44], 0))
    data = jfk.read_bytes()
    (folder / "k09-truncated.flac").write_bytes(data[: len(data) * 2 // 5])
    (folder / "k10-notes.wav").write_text("meeting notes, not audio\n" * 40)
    (folder / "k11-random.flac").write_bytes(np.random.default_rng(11).integers(0, 256, 50_000, np.uint8).tobytes())
    (folder / "k12-video.mp4").write_bytes(_ffmpeg("-f", "lavfi", "-i", "testsrc=d=1:s=64x64", "-f", "mp4",
                                                   "-movflags", "frag_keyframe+empty_moov"))
    (folder / "k13-one-hertz.wav").write_bytes(_wav(_tone(16000, rate=1, freq=0.1), rate=1))
    _long_silence_flac(folder / "k14-hour-of-silence.flac", 3600)
    (folder / "k15-declares-5h.flac").write_bytes(_flac_declaring(5 * 3600))
    for tag, value in (("k16", np.nan), ("k17", np.inf), ("k18", -np.inf)):
        x = _tone(3.0)
        x[RATE] = value
        (folder / f"{tag}-non-finite.wav").write_bytes(_wav(x, subtype="FLOAT"))
    (folder / "k19-declares-longer.wav").write_bytes(_patch_wav_data_size(tone_wav, (len(tone_wav) - 44) * 10))
    (folder / "k20-declares-shorter.wav").write_bytes(_patch_wav_data_size(tone_wav, 3200))
    mp3 = _ffmpeg("-f", "lavfi", "-i", "sine=f=300:d=3", "-f", "mp3")
    (folder / "k21-mp3-garbage.mp3").write_bytes(mp3 + np.random.default_rng(21).integers(0, 256, 20_000, np.uint8)
                                                 .tobytes())
    sf.write(folder / "k22-click.wav", _tone(0.2, freq=440, level=0.5), RATE)
    (folder / "k23-dir.wav").mkdir()
    os.mkfifo(folder / "k24-fifo.wav")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(folder / "k25-socket.wav"))
    finally:
        sock.close()
    os.symlink("/dev/null", folder / "k26-dev-null.wav")
    os.symlink("/dev/zero", folder / "k27-dev-zero.wav")
    os.symlink("k28-loop.wav", folder / "k28-loop.wav")
    os.symlink("k29-nowhere.wav", folder / "k29-broken.wav")
    with open(os.path.join(os.fsencode(folder), b"k30-bad-\xff\xfe-name.wav"), "wb") as fh:
        fh.write(_wav(_tone(2.0, freq=500)))
    (folder / "k31-newline.wav\n").write_bytes(_wav(_tone(2.0, freq=600)))
    deep = folder.joinpath(*(["k32-" + "d" * 240] * 5))
    deep.mkdir(parents=True)
    (deep / "k32-long.wav").write_bytes(_wav(_tone(2.0, freq=700)))
    noise = np.random.default_rng(33).integers(-3000, 3000, MAX_BYTES // 2 + RATE, np.int16)
    sf.write(folder / "k33-too-large.wav", noise, RATE, subtype="PCM_16")
    sf.write(folder / "k34-noise.wav", np.random.default_rng(34).normal(0, 0.1, 5 * RATE).astype(np.float32), RATE,
             subtype="PCM_16")
    unreadable = folder / "k35-unreadable.wav"
    unreadable.write_bytes(_wav(_tone(2.0, freq=800)))
    unreadable.chmod(0)
    sf.write(folder / "k36-digital-silence.wav", np.zeros(10 * RATE, np.float32), RATE, subtype="PCM_16")
    (folder / "README.txt").write_text("not audio by name: ignored, not quarantined\n")
    return folder


def tag_of(uri: str) -> str:
    import re

    return re.findall(r"/(k\d\d)-[^/]*$", uri)[0]
