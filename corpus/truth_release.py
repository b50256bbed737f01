"""A release labelled by reference transcripts instead of ASR: ``gen-audio`` output or a gold set.

Each line of ``truth.jsonl`` (file, start, end, text, domain …) becomes one kept segment cut
from its decoded recording with a little context padding. Useful as a gold release for
training and calibration tests, and as the smallest end-to-end use of the corpus API.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from corpus.audio import decode
from corpus.release import ReleaseWriter
from corpus.schema import SAMPLE_RATE, recording_id, segment_id
from corpus.splits import DEFAULT_FRACTIONS, assign_split
from corpus.store import Store

PAD_SECONDS = 0.15


def read_truth(path: str | Path) -> list[dict]:
    """Utterances of a truth JSONL file (or the folder holding ``truth.jsonl``), checked."""
    path = Path(path)
    if path.is_dir():
        path = path / "truth.jsonl"
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = {"file", "start", "end", "text"} - set(row)
        if missing:
            raise ValueError(f"{path}:{n}: missing fields {sorted(missing)}")
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no utterances")
    return rows


def build_truth_release(audio_dir: str | Path, store: Store, name: str, *, truth: str | Path | None = None,
                        fractions: dict[str, float] = DEFAULT_FRACTIONS, max_shard_bytes: int | None = None,
                        progress: bool = False) -> dict:
    """Write release ``name`` from the audio in ``audio_dir`` and its truth file; returns RELEASE.json."""
    audio_dir = Path(audio_dir)
    truth_path = Path(truth) if truth else audio_dir / "truth.jsonl"
    by_file: dict[str, list[dict]] = defaultdict(list)
    for row in read_truth(truth_path):
        by_file[row["file"]].append(row)
    config = {"kind": "truth", "audio_dir": str(audio_dir), "truth": str(truth_path),
              "split_fractions": fractions, "pad_seconds": PAD_SECONDS}
    samples = []
    for file in tqdm(sorted(by_file), desc="decode", unit="file", disable=not progress):
        audio = decode(audio_dir / file)
        rec = recording_id(audio.pcm)
        split = assign_split(rec, fractions)
        for utt in by_file[file]:
            start = max(0.0, float(utt["start"]) - PAD_SECONDS)
            end = min(audio.duration, float(utt["end"]) + PAD_SECONDS)
            a, b = round(start * SAMPLE_RATE), round(end * SAMPLE_RATE)
            start, end = a / SAMPLE_RATE, b / SAMPLE_RATE
            sid = segment_id(rec, start, end)
            row = {"segment_id": sid, "recording_id": rec, "source_uri": (audio_dir / file).resolve().as_uri(),
                   "domain": utt.get("domain", "default"), "split": split, "start": start, "end": end,
                   "text": utt["text"], "avg_logprob": None, "no_speech_prob": None, "compression_ratio": None,
                   "decision": "keep", "reasons": [], "group": rec}
            extra = {k: v for k, v in utt.items() if k not in row and k not in ("file", "start", "end")}
            samples.append((row, audio.pcm[a:b], extra))
    samples.sort(key=lambda s: s[0]["segment_id"])
    options = {"max_shard_bytes": max_shard_bytes} if max_shard_bytes else {}
    with ReleaseWriter(store, name, config=config, **options) as writer:
        for row, pcm, extra in tqdm(samples, desc="shard", unit="seg", disable=not progress):
            writer.add(row, pcm=pcm, extra={"label_source": "reference", **extra})
        return writer.commit()
