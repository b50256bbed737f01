"""Two-pass decoding on gold data: does re-decoding uncertain segments lower the WER of the kept set?

Labels every segment of gen-audio files (4 domains, known transcripts) twice with the same model:
first pass only (batched, greedy), and two-pass (segments whose first-pass avg_logprob is in the
band are decoded again alone with beam search + temperature fallback; the more confident result
is used). Prints, per pass mode: wall time, segments re-decoded, and for all segments and for the
kept set (default filter thresholds): hours, WER, share of segments with WER > 0.3.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.audio import decode  # noqa: E402
from reference.gen_audio import generate  # noqa: E402
from corpus.schema import segment_id  # noqa: E402
from reference.releases import read_truth  # noqa: E402
from pipelines.asr import WhisperLabeler, speech_timestamps  # noqa: E402
from pipelines.calibrate import evaluate, match_gold  # noqa: E402
from pipelines.config import FilterConfig, SegmentConfig  # noqa: E402
from pipelines.filter import decide  # noqa: E402
from pipelines.segment import pack_segments  # noqa: E402


def label_all(files, labeler, seg_cfg) -> tuple[list[dict], float]:
    rows, start = [], time.perf_counter()
    for f in files:
        audio = decode(f)
        segs = pack_segments(speech_timestamps(audio.pcm), audio.duration, min_seconds=seg_cfg.min_seconds,
                             max_seconds=seg_cfg.max_seconds, max_gap=seg_cfg.max_gap, pad=seg_cfg.pad)
        for (a, b), label in zip(segs, labeler.label(audio.pcm, segs)):
            rows.append({"segment_id": segment_id(f.stem.replace(".", "_"), a, b), "recording_id": f.stem,
                         "source_uri": f.as_uri(), "domain": f.name.split("-")[0], "start": a, "end": b, **label})
    return rows, time.perf_counter() - start


def scored(rows, truth) -> list[dict]:
    groups, _ = match_gold(rows, truth)
    return [{**s, "wer": g.wer, "duration": s["end"] - s["start"]} for g in groups if g.gold for s in g.segments]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--audio-dir", help="gen-audio output to use instead of generating")
    parser.add_argument("--band", type=float, nargs=2, default=(-1.5, -0.3), metavar=("LOW", "HIGH"))
    parser.add_argument("--max-seconds", type=float, default=12.0, help="segment length target")
    args = parser.parse_args()
    raw = Path(args.audio_dir) if args.audio_dir else Path(tempfile.mkdtemp(prefix="bench-2pass-")) / "raw"
    if not args.audio_dir:
        generate(raw, minutes=args.minutes, seed=12)
    truth = read_truth(raw)
    files = sorted(p for p in raw.iterdir() if p.suffix in (".wav", ".flac"))
    seg_cfg = SegmentConfig(max_seconds=args.max_seconds)
    defaults = FilterConfig()
    print(f"{'mode':<12}{'seconds':>9}{'2nd passes':>12}{'set':>6}{'segs':>6}{'hours':>8}{'WER':>7}{'bad':>7}")
    for mode, band in (("first pass", None), ("two-pass", tuple(args.band))):
        labeler = WhisperLabeler(batch_size=8, second_pass_band=band)
        rows, seconds = label_all(files, labeler, seg_cfg)
        rows = scored(rows, truth)
        kept = [decide(r, defaults)[0] == "keep" for r in rows]
        for name, keep in (("all", [True] * len(rows)), ("kept", kept)):
            m = evaluate(rows, keep)
            print(f"{mode:<12}{seconds:>9.1f}{labeler.second_passes:>12}{name:>6}{m['kept']:>6}{m['hours_kept']:>8.3f}"
                  f"{m['wer_kept']:>7.3f}{m['share_bad']:>7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
