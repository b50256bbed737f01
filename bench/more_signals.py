"""Two more label-free signals for a hold-out's pieces, to see whether they raise ``bench/ceiling.py``'s ceiling.

Neither is in the pipeline: this measures whether they would be worth it.

``cross_word_prob``  tiny.en's own probability of base's words: tiny.en's decoder is forced through
                     base's label of the segment (CTranslate2 ``align``, as faster-whisper times
                     words) and each word gets the mean probability of its tokens; a piece gets the
                     mean over its words. Unlike the agreement CER, it asks whether the second model
                     finds the first model's words plausible, not whether it would have written them.
``nbest_agree``      base's beam (5 wide) kept whole: the share of its four runners-up whose stretch
                     aligned to the piece is the piece's own text (1.0: every alternative agrees).

Reads ``bench/quality.py``'s labels cache and ``--rows`` output for one hold-out set, decodes the
set's segments again (segmented as the build does), and writes the rows of the shipped config with
the two signals added: ``python bench/ceiling.py OUT.jsonl --features cross_word_prob,nbest_agree``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ceiling import CONFIG  # noqa: E402
from bench.quality import segments_of  # noqa: E402
from pipelines.agreement import span_disagreement  # noqa: E402
from pipelines.asr import SAMPLE_RATE, choose_device  # noqa: E402
from pipelines.models import resolve_model  # noqa: E402

ALTERNATIVES = 5  # base's beam width as a build decodes it; every hypothesis kept


class Scorer:
    """A faster-whisper model's encoder and decoder, used directly (forced alignment, n-best)."""

    def __init__(self, name: str):
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        device, compute_type = choose_device("auto", "auto")  # as a build loads it
        self.model = WhisperModel(resolve_model(name), device=device, compute_type=compute_type, local_files_only=True)
        self.tok = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe",
                             language="en")

    def _encode(self, clip: np.ndarray):
        from faster_whisper.audio import pad_or_trim

        features = self.model.feature_extractor(clip)
        return self.model.encode(pad_or_trim(features)), min(features.shape[-1] - 1, 3000)

    def word_probs(self, clip: np.ndarray, words: list[str]) -> list[float] | None:
        """This model's probability of each of another model's words (None: its tokens do not spell them)."""
        if not words:
            return []
        encoded, frames = self._encode(clip)
        tokens = self.tok.encode("".join(words))
        probs = self.model.model.align(encoded, self.tok.sot_sequence, [tokens], frames)[0].text_token_probs
        ends = np.cumsum([len(w) for w in words])
        sums, counts, pos = [0.0] * len(words), [0] * len(words), 0
        for token, p in zip(tokens, probs):  # a token belongs to the word holding its first character
            k = min(int(np.searchsorted(ends, pos, side="right")), len(words) - 1)
            sums[k] += float(p)
            counts[k] += 1
            pos += len(self.tok.decode([token]))
        return [s / c for s, c in zip(sums, counts)] if pos == ends[-1] and all(counts) else None

    def hypotheses(self, clip: np.ndarray) -> list[str]:
        encoded, _frames = self._encode(clip)
        prompt = [*self.tok.sot_sequence, self.tok.no_timestamps]
        result = self.model.model.generate(encoded, [prompt], beam_size=ALTERNATIVES, num_hypotheses=ALTERNATIVES,
                                           max_length=448, suppress_blank=True, suppress_tokens=[-1])[0]
        return [self.tok.decode(ids).strip() for ids in result.sequences_ids]


def signals(row: dict, parent: dict, cross: list[float] | None, hyps: list[str]) -> dict:
    words = parent.get("words") or []
    idx = [k for k, w in enumerate(words) if w["start"] >= row["start"] - 1e-3 and w["end"] <= row["end"] + 1e-3]
    if not idx:
        return {"cross_word_prob": None, "nbest_agree": None}
    a, b = idx[0], idx[-1] + 1
    texts = [w["word"] for w in words]
    agree = [span_disagreement(texts, a, b, h) == 0 for h in hyps[1:]]
    return {"cross_word_prob": float(np.mean(cross[a:b])) if cross else None,
            "nbest_agree": sum(agree) / len(agree) if agree else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holdout-dir", required=True, help="the hold-out set (bench/holdout.py output)")
    parser.add_argument("--labels-cache", required=True, help="bench/quality.py --labels-cache for that set")
    parser.add_argument("--rows", required=True, help="bench/quality.py --rows for that set")
    parser.add_argument("--out", required=True, help="the shipped config's rows with the two signals (JSON lines)")
    args = parser.parse_args()
    raw = Path(args.holdout_dir)
    base = {lab["segment_id"]: (rid, int(i), lab)
            for rid, labs in json.loads(Path(args.labels_cache).read_text())["base"].items() for i, lab in labs.items()}
    segs = segments_of(sorted(p for p in raw.iterdir() if p.suffix in (".wav", ".flac")))
    tiny, again = Scorer("tiny.en"), Scorer("base")
    cross, hyps, spent = {}, {}, [0.0, 0.0]
    for seg_id, (rid, i, lab) in base.items():
        s, e = segs[rid][2][i]
        clip = np.ascontiguousarray(segs[rid][1].pcm[round(s * SAMPLE_RATE):round(e * SAMPLE_RATE)], dtype=np.float32)
        t0 = time.perf_counter()
        cross[seg_id] = tiny.word_probs(clip, [w["word"] for w in lab.get("words") or []])
        t1 = time.perf_counter()
        hyps[seg_id] = again.hypotheses(clip)
        spent[0] += t1 - t0
        spent[1] += time.perf_counter() - t1
    audio_s = sum(segs[rid][2][i][1] - segs[rid][2][i][0] for rid, i, _ in base.values())
    print(f"{len(base)} segments, {audio_s:.0f} s: tiny.en forced {audio_s / spent[0]:.1f} audio-s/s, "
          f"base 5-best {audio_s / spent[1]:.1f} audio-s/s")
    with open(args.out, "w") as out:
        for line in Path(args.rows).read_text().splitlines():
            row = json.loads(line)
            if row["config"] != CONFIG:
                continue
            parent = row.get("parent_segment_id") or row["segment_id"]
            _rid, _i, lab = base[parent]
            out.write(json.dumps({**row, **signals(row, lab, cross[parent], hyps[parent])}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
