"""Releases labelled by reference transcripts instead of ASR: ``gen-audio`` output or a gold set.

Each line of ``truth.jsonl`` (file, start, end, text, domain …) becomes one kept segment cut
from its decoded recording with a little context padding. Two ways to assign splits:

- :func:`build_truth_release` by recording (a hash of the recording id), as a real corpus must:
  the gold release for calibration and the smallest end-to-end use of the corpus API;
- :func:`build_gen_release` by utterance: every ``every``-th utterance of a domain goes to
  validation and the next to test, so even a 6-minute release has every split in every domain
  (tests, benchmarks, the demo). Utterances of one recording then sit in several splits: fine for
  those, not for measuring generalisation to new speakers.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
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


def _utterances(audio_dir: Path, truth: Path, progress: bool) -> Iterator[tuple[str, str, dict, object]]:
    """(recording id, source uri, utterance, padded pcm span and times) per utterance, by file then start."""
    by_file: dict[str, list[dict]] = defaultdict(list)
    for row in read_truth(truth):
        by_file[row["file"]].append(row)
    for file in tqdm(sorted(by_file), desc="decode", unit="file", disable=not progress):
        audio = decode(audio_dir / file)
        rec = recording_id(audio.pcm)
        uri = (audio_dir / file).resolve().as_uri()
        for utt in sorted(by_file[file], key=lambda u: float(u["start"])):
            a = round(max(0.0, float(utt["start"]) - PAD_SECONDS) * SAMPLE_RATE)
            b = round(min(audio.duration, float(utt["end"]) + PAD_SECONDS) * SAMPLE_RATE)
            yield rec, uri, utt, (a, b, audio.pcm[a:b])


def _write(store: Store, name: str, audio_dir: Path, truth: Path, config: dict,
           split_and_group: Callable[[str, str, dict], tuple[str, str]], *, keep_extra: bool,
           max_shard_bytes: int | None, max_shard_samples: int | None, progress: bool) -> dict:
    samples = []
    for rec, uri, utt, (a, b, pcm) in _utterances(audio_dir, truth, progress):
        start, end = a / SAMPLE_RATE, b / SAMPLE_RATE
        sid = segment_id(rec, start, end)
        domain = utt.get("domain", "default")
        split, group = split_and_group(rec, sid, utt)
        row = {"segment_id": sid, "recording_id": rec, "source_uri": uri, "domain": domain, "split": split,
               "start": start, "end": end, "text": utt["text"], "avg_logprob": None, "no_speech_prob": None,
               "compression_ratio": None, "decision": "keep", "reasons": [], "group": group}
        extra = {"label_source": "reference"}
        if keep_extra:
            extra.update({k: v for k, v in utt.items() if k not in row and k not in ("file", "start", "end")})
        samples.append((row, pcm, extra))
    samples.sort(key=lambda s: s[0]["segment_id"])
    options = {"max_shard_bytes": max_shard_bytes} if max_shard_bytes else {}
    if max_shard_samples:
        options["max_shard_samples"] = max_shard_samples
    with ReleaseWriter(store, name, config=config, **options) as writer:
        for row, pcm, extra in tqdm(samples, desc="shard", unit="seg", disable=not progress):
            writer.add(row, pcm=pcm, extra=extra)
        return writer.commit()


def build_truth_release(audio_dir: str | Path, store: Store, name: str, *, truth: str | Path | None = None,
                        fractions: dict[str, float] = DEFAULT_FRACTIONS, max_shard_bytes: int | None = None,
                        progress: bool = False) -> dict:
    """Write release ``name`` from the audio in ``audio_dir`` and its truth file, split by recording;
    returns its RELEASE.json."""
    audio_dir = Path(audio_dir)
    truth_path = Path(truth) if truth else audio_dir / "truth.jsonl"
    config = {"kind": "truth", "audio_dir": str(audio_dir), "truth": str(truth_path),
              "split_fractions": fractions, "pad_seconds": PAD_SECONDS}
    return _write(store, name, audio_dir, truth_path, config, lambda rec, sid, utt: (assign_split(rec, fractions), rec),
                  keep_extra=True, max_shard_bytes=max_shard_bytes, max_shard_samples=None, progress=progress)


def build_gen_release(audio_dir: str | Path, store: Store, name: str, *, every: int = 6,
                      max_shard_bytes: int | None = None, max_shard_samples: int | None = None,
                      held_out: tuple[str, ...] = ()) -> dict:
    """Write release ``name`` from ``audio_dir`` (gen-audio output), split by utterance; returns its
    RELEASE.json.

    Domains in ``held_out`` get no training data: their utterances go to validation and test by
    turns, so a model trained on the release is measured on a domain it never heard.
    """
    if every < 3:
        raise ValueError(f"every must be >= 3 (one validation and one test utterance in each run of it), got {every}")
    audio_dir = Path(audio_dir)
    counter: dict[str, int] = defaultdict(int)

    def by_turns(rec: str, sid: str, utt: dict) -> tuple[str, str]:
        domain = utt.get("domain", "default")
        n = counter[domain]
        counter[domain] += 1
        if domain in held_out:
            return ("validation" if n % 2 == 0 else "test"), sid
        return ("validation" if n % every == every - 2 else "test" if n % every == every - 1 else "train"), sid

    config = {"kind": "truth", "audio_dir": str(audio_dir), "split": f"by utterance, every {every}",
              "pad_seconds": PAD_SECONDS, "held_out": list(held_out)}
    return _write(store, name, audio_dir, audio_dir / "truth.jsonl", config, by_turns, keep_extra=False,
                  max_shard_bytes=max_shard_bytes, max_shard_samples=max_shard_samples, progress=False)
