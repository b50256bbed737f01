"""A small reference-labelled release from gen-audio output, with every split in every domain.

``corpus.truth_release`` assigns splits by recording, as a real corpus must; a few minutes of
gen-audio make only one or two recordings per domain, so most domains would have no validation
or test data. Here every ``every``-th utterance of a domain goes to validation and the next to
test (the rest to train), so even a 6-minute release can be trained on and evaluated per domain.
Utterances of one recording then sit in several splits: fine for tests, benchmarks and demos,
not for measuring generalisation to new speakers.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from corpus.audio import decode
from corpus.release import ReleaseWriter
from corpus.schema import SAMPLE_RATE, recording_id, segment_id
from corpus.store import Store
from corpus.truth_release import PAD_SECONDS, read_truth


def build_gen_release(audio_dir: str | Path, store: Store, name: str, *, every: int = 6,
                      max_shard_bytes: int | None = None, max_shard_samples: int | None = None,
                      held_out: tuple[str, ...] = ()) -> dict:
    """Write release ``name`` from ``audio_dir`` (gen-audio output); returns its RELEASE.json.

    Domains in ``held_out`` get no training data: their utterances go to validation and test by
    turns, so a model trained on the release is measured on a domain it never heard.
    """
    if every < 3:
        raise ValueError(f"every must be >= 3 (one validation and one test utterance in each run of it), got {every}")
    audio_dir = Path(audio_dir)
    by_file: dict[str, list[dict]] = defaultdict(list)
    for row in read_truth(audio_dir / "truth.jsonl"):
        by_file[row["file"]].append(row)
    counter: dict[str, int] = defaultdict(int)
    samples = []
    for file in sorted(by_file):
        audio = decode(audio_dir / file)
        rec = recording_id(audio.pcm)
        for utt in sorted(by_file[file], key=lambda u: u["start"]):
            domain = utt.get("domain", "default")
            n = counter[domain]
            counter[domain] += 1
            if domain in held_out:
                split = "validation" if n % 2 == 0 else "test"
            else:
                split = "validation" if n % every == every - 2 else "test" if n % every == every - 1 else "train"
            a = round(max(0.0, float(utt["start"]) - PAD_SECONDS) * SAMPLE_RATE)
            b = round(min(audio.duration, float(utt["end"]) + PAD_SECONDS) * SAMPLE_RATE)
            sid = segment_id(rec, a / SAMPLE_RATE, b / SAMPLE_RATE)
            row = {"segment_id": sid, "recording_id": rec, "group": sid,  # the split is assigned per utterance
                   "source_uri": (audio_dir / file).resolve().as_uri(), "domain": domain, "split": split,
                   "start": a / SAMPLE_RATE, "end": b / SAMPLE_RATE, "text": utt["text"], "avg_logprob": None,
                   "no_speech_prob": None, "compression_ratio": None, "decision": "keep", "reasons": []}
            samples.append((row, audio.pcm[a:b]))
    samples.sort(key=lambda s: s[0]["segment_id"])
    config = {"kind": "truth", "audio_dir": str(audio_dir), "split": f"by utterance, every {every}",
              "pad_seconds": PAD_SECONDS, "held_out": list(held_out)}
    options = {"max_shard_bytes": max_shard_bytes} if max_shard_bytes else {}
    if max_shard_samples:
        options["max_shard_samples"] = max_shard_samples
    with ReleaseWriter(store, name, config=config, **options) as writer:
        for row, pcm in samples:
            writer.add(row, pcm=pcm, extra={"label_source": "reference"})
        return writer.commit()
