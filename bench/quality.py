"""Label quality on an unseen hold-out, with the shipped defaults, against today's and the field's.

Generates ``bench/holdout.py``'s set (voices, texts and degradations gen-audio and calibration
never saw; foreign sentences inside English recordings; files with no speech), segments it as the
build does (Silero VAD + ``pack_segments`` with the default ``segment`` config), labels every
segment with ``tiny.en`` (greedy) and with ``base`` (beam search as a build decodes it, language per
segment and per phrase; and greedily, to show what beam search changes), and puts the
labels through the build's own stages (``TrimStage``, ``AssignSplits``, ``FilterStage``: trimming,
every filter rule, then ``manifest_row``) under several filter configs. Nothing is fitted here: the thresholds are the
shipped defaults.

Per config, per domain and overall: kept segments with WER > 0.3 (no-speech and foreign-speech
segments kept count as bad), WER of the kept set, share of good-label (WER <= 0.1) seconds kept,
good-label seconds kept, kept segments holding foreign speech (>= 0.5 s of a foreign sentence),
kept segments from no-speech files. Then the per-language CER of the ru/de/es/fr fixtures with
``base``, and the cost of each signal in audio-seconds per wall-second against the first pass.

A segment's reference: the hold-out's English words whose midpoint lies inside it, timed by the
synthesiser's own word events (``bench/espeak_words.py``; a truth file without them falls back to
spreading each sentence's duration over its characters); the WER is the lowest over the
reference moved by up to one word at either edge, so a cut between two words is not counted as
an error of the label.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.holdout import generate  # noqa: E402
from corpus.audio import decode  # noqa: E402
from corpus.schema import Label, Recording, Segment, manifest_row, segment_id  # noqa: E402
from corpus.text import char_error_rate, normalize_text, word_error_rate  # noqa: E402
from pipelines import agreement  # noqa: E402
from pipelines.asr import WhisperLabeler, default_beam_size, speech_timestamps  # noqa: E402
from pipelines.decide import AssignSplits, FilterStage, TrimStage  # noqa: E402
from pipelines.config import BuildConfig, FilterConfig, SegmentConfig  # noqa: E402
from pipelines.segment import pack_segments  # noqa: E402

BAD, GOOD = 0.3, 0.1
BEAM_SIZE = default_beam_size(multilingual=True)  # base's first pass, as a build decodes it
# the filter as it was before issue 12 (rules added since switched off), and the field's
TODAY = dict(trim=False, min_unique_word_ratio=0.0, max_word_chars=1000, phantom_max_dbfs=-200.0,
             phantom_min_no_speech_prob=1.0, max_chars_per_second=30.0, min_confidence=0.0,
             foreign_max_word_prob=1.0)
FIELD = dict(TODAY, min_mean_word_prob=0.0)
AGREEMENT_MAX_CER = 0.25  # chosen before looking at this set: tiny.en and base agree far closer on clean speech
FIXTURES = {"es": [("leopard/test_es.wav", "Las arenas son blanquecinas de grano medio y tiene muy poca asistencia.")],
            "de": [("leopard/test_de.wav", "Der hinter diesem Portal liegenden Raum wurde als Leichenhalle genutzt.")],
            "fr": [("leopard/test_fr.wav",
                    "Sous le consulat il devient conservateur des eaux et forêts et conseiller général.")],
            "ru": [("DeepSpeech/ru.wav", "бедняга ребят на его месте должен был быть я"),
                   ("pisets/test_sound_ru.wav", "нейронные сети это хорошо")]}


def segments_of(files: list[Path]) -> dict[str, tuple]:
    seg = SegmentConfig()
    out = {}
    for f in files:
        audio = decode(f)
        spans = pack_segments(speech_timestamps(audio.pcm, threshold=seg.vad_threshold), audio.duration,
                              min_seconds=seg.min_seconds, max_seconds=seg.max_seconds, max_gap=seg.max_gap, pad=seg.pad)
        out[f.stem.replace("-", "_")] = (f, audio, spans)
    return out


def label_all(segs: dict, labeler: WhisperLabeler, only: dict[str, list[int]] | None = None) -> tuple[dict, float]:
    labels, start = {}, time.perf_counter()
    for rid, (f, audio, spans) in segs.items():
        idx = list(range(len(spans))) if only is None else only.get(rid, [])
        got = labeler.label(audio.pcm, [spans[i] for i in idx], language="en") if idx else []
        labels[rid] = {i: {"segment_id": segment_id(rid, spans[i][0], spans[i][1]), "recording_id": rid,
                           "start": spans[i][0], "end": spans[i][1], **lab} for i, lab in zip(idx, got)}
    return labels, time.perf_counter() - start


def with_agreement(first: dict, second: dict, when: str) -> dict:
    """The first pass's labels with the second opinion's agreement where a build asks for it (``when``:
    'uncertain' or 'all'); elsewhere ``agreement_cer`` is None."""
    out = {}
    for rid, labs in first.items():
        out[rid] = {}
        for i, lab in labs.items():
            if agreement.needs_second_opinion(lab, when=when, max_word_prob=0.8):
                other = second[rid][i]["text"]
                out[rid][i] = {**lab, "agreement_cer": agreement.disagreement(lab["text"], other),
                               "agreement_text": other}
            else:
                out[rid][i] = {**lab, "agreement_cer": None}
    return out


def manifest(segs: dict, labels: dict, filt: FilterConfig, raw: Path) -> list[dict]:
    config = BuildConfig(release="quality", sources=[{"uri": str(raw), "domain": "holdout"}], filter=filt)
    recordings = [Recording(file_key=rid, recording_id=rid, uri=f.as_uri(), source_uri=raw.as_uri(), key=f.name,
                            domain=f.name.split("-")[0], language="en",
                            segments=[Segment(lab["segment_id"], rid, lab["start"], lab["end"], Label.from_dict(lab))
                                      for _, lab in sorted(labels.get(rid, {}).items())])
                  for rid, (f, _a, _s) in segs.items()]
    for stage in (TrimStage(config.filter), AssignSplits(config.splits, {}, {}), FilterStage(config.filter)):
        recordings = stage.process(recordings)
    return [{**manifest_row(seg, rec), "_label": seg.label.to_dict()} for rec in recordings for seg in rec.segments]


def gold_words(truth: list[dict]) -> dict[str, list[tuple[float, str, str]]]:
    """file → [(time, word, language)] in time order: each word's midpoint, from the synthesiser's word
    times where the truth has them (``words``), else the sentence's duration spread over its characters."""
    out = defaultdict(list)
    for t in truth:
        lang = t.get("language", "en")
        if t.get("words"):
            out[t["file"]].extend(((a + b) / 2, w, lang) for a, b, w in t["words"])
            continue
        words = normalize_text(t["text"]).split()
        total = sum(len(w) + 1 for w in words)
        pos = 0
        for w in words:
            mid = t["start"] + (t["end"] - t["start"]) * (pos + (len(w) + 1) / 2) / total
            out[t["file"]].append((mid, w, lang))
            pos += len(w) + 1
    return {f: sorted(v) for f, v in out.items()}


def score(row: dict, words: list, truth: list[dict]) -> dict:
    file = row["source_uri"].rsplit("/", 1)[-1]
    dur = row["end"] - row["start"]
    foreign = any(t["file"] == file and t.get("language", "en") != "en"
                  and min(row["end"], t["end"]) - max(row["start"], t["start"]) >= 0.5 for t in truth)
    hyp = normalize_text(row["text"] or "")
    if file.startswith("nospeech"):
        return {"wer": 1.0 if hyp else 0.0, "nref": 0, "dur": dur, "foreign": False, "nospeech": True, "reference": ""}
    en = [(i, w) for i, (t, w, lang) in enumerate(words) if lang == "en"]
    inside = [k for k, (i, _) in enumerate(en) if row["start"] <= words[i][0] < row["end"]]
    best, nref, ref = 1.0 if hyp else 0.0, 0, ""
    if inside:
        a, b = inside[0], inside[-1] + 1
        best = 9.0
        for da in (-1, 0, 1):
            for db in (-1, 0, 1):
                lo, hi = max(0, a + da), min(len(en), b + db)
                if hi > lo:
                    wer = word_error_rate(" ".join(w for _, w in en[lo:hi]), hyp)
                    if wer < best:
                        best, nref, ref = wer, hi - lo, " ".join(w for _, w in en[lo:hi])
    return {"wer": best, "nref": nref, "dur": dur, "foreign": foreign, "nospeech": False, "reference": ref}


def is_bad(row: dict) -> bool:
    """A kept piece that counts against the label quality: WER > 0.3, foreign speech or no speech."""
    return row["wer"] > BAD or bool(row["foreign"]) or bool(row["nospeech"])


def is_good(row: dict) -> bool:
    """A piece with a good label: WER <= 0.1 against a reference with words."""
    return row["wer"] <= GOOD and bool(row["nref"])


def figures(rows: list[dict]) -> dict:
    kept = [r for r in rows if r["decision"] == "keep"]
    bad = sum(map(is_bad, kept))
    good = [r for r in rows if is_good(r)]
    refs = sum(r["nref"] for r in kept)
    return {"segments": len(rows), "kept": len(kept), "bad_share": bad / len(kept) if kept else 0.0,
            "wer_kept": sum(r["wer"] * r["nref"] for r in kept) / refs if refs else 0.0,
            "good_kept_share": (sum(r["dur"] for r in good if r["decision"] == "keep") / sum(r["dur"] for r in good)
                                if good else 0.0),
            "good_kept_s": sum(r["dur"] for r in good if r["decision"] == "keep"),
            "foreign_kept": sum(r["foreign"] for r in kept), "nospeech_kept": sum(r["nospeech"] for r in kept)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--holdout-dir", help="bench/holdout.py output to use instead of generating")
    parser.add_argument("--files-per-domain", type=int, default=3, help="when generating: files per domain")
    parser.add_argument("--first", type=int, default=0, help="when generating: first file index per domain "
                        "(e.g. 3 with --files-per-domain 6: three new files per domain, none of the usual ones)")
    parser.add_argument("--fixtures", default=str(Path(__file__).resolve().parents[2] / "shared/fixtures/audio"))
    parser.add_argument("--json", help="write every figure here too")
    parser.add_argument("--labels-cache", help="labels and timings saved here, and read back when present "
                        "(to re-score without decoding again; the timings are the first run's)")
    parser.add_argument("--relabel-base", action="store_true", help="with --labels-cache: decode with base again "
                        "(tiny.en's labels are reused)")
    parser.add_argument("--rows", help="write every manifest row, scored, here (JSON lines)")
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                        help="a filter setting other than its default, in every config (repeatable)")
    args = parser.parse_args()
    settings = dict(item.split("=", 1) for item in args.set)
    raw = Path(args.holdout_dir) if args.holdout_dir else Path(tempfile.mkdtemp(prefix="bench-quality-")) / "holdout"
    if not args.holdout_dir:
        generate(raw, files_per_domain=args.files_per_domain, first=args.first)
    truth = [json.loads(line) for line in (raw / "truth.jsonl").read_text().splitlines() if line.strip()]
    words = gold_words(truth)
    segs = segments_of(sorted(p for p in raw.iterdir() if p.suffix in (".wav", ".flac")))
    audio_s = sum(a.duration for _f, a, _s in segs.values())
    print(f"hold-out: {len(segs)} files, {audio_s / 60:.1f} min, {len(truth)} sentences "
          f"({sum(t.get('language', 'en') != 'en' for t in truth)} foreign), {sum(len(s) for *_, s in segs.values())} segments")

    cache = Path(args.labels_cache) if args.labels_cache else None
    saved = json.loads(cache.read_text()) if cache and cache.exists() else {}
    back = lambda d: {rid: {int(i): lab for i, lab in labs.items()} for rid, labs in d.items()}  # noqa: E731
    if saved.get("beam_size") != BEAM_SIZE:  # a cache from before the first pass used beam search: its base is greedy
        saved = {}
    if saved and not args.relabel_base:
        tiny_labels, base_labels, greedy_labels, second_labels = (back(saved[k])
                                                                  for k in ("tiny", "base", "greedy", "second"))
        tiny_s, base_s, greedy_s, second_s, lang_s, phrase_s = saved["seconds"]
    else:
        # tiny.en greedily: the field's first pass, and the second opinion as a build asks it
        tiny_labels, tiny_s = (back(saved["tiny"]), saved["seconds"][0]) if saved else \
            label_all(segs, WhisperLabeler(model="tiny.en", batch_size=8, beam_size=1))
        # base greedily (the first pass before beam search: its labels, and its decode's cost) ...
        greedy = WhisperLabeler(model="base", batch_size=8, beam_size=1)
        greedy_labels, greedy_s = label_all(segs, greedy)
        greedy_s -= greedy.language_seconds
        # ... and as a build decodes it: beam search, language per segment and per phrase
        base = WhisperLabeler(model="base", batch_size=8, beam_size=BEAM_SIZE)
        base_labels, base_s = label_all(segs, base)
        lang_s, phrase_s = base.language_seconds, base.phrase_language_seconds
        uncertain = {rid: [i for i, lab in labs.items()
                           if agreement.needs_second_opinion(lab, when="uncertain", max_word_prob=0.8)]
                     for rid, labs in base_labels.items()}
        second = WhisperLabeler(model="tiny.en", batch_size=8, beam_size=1, word_timestamps=False, language_id=False)
        second_labels, second_s = label_all(segs, second, only=uncertain)
        if cache:
            cache.write_text(json.dumps({"beam_size": BEAM_SIZE, "tiny": tiny_labels, "base": base_labels,
                                         "greedy": greedy_labels, "second": second_labels,
                                         "seconds": [tiny_s, base_s, greedy_s, second_s, lang_s, phrase_s]}))
    uncertain = {rid: sorted(labs) for rid, labs in second_labels.items()}
    agree_all = with_agreement(base_labels, tiny_labels, "all")
    agree_unc = with_agreement(base_labels, second_labels, "uncertain")
    # base decoded greedily, everything else as shipped (the second opinion, tiny.en's greedy label, where
    # it is unsure): what beam search changes
    greedy_unc = with_agreement(greedy_labels, tiny_labels, "uncertain")

    # P(declared language) of every judged phrase, by seconds: what min_declared_language_probability cuts
    phr = []
    for rid, labs in base_labels.items():
        for lab in labs.values():
            for a, b, _lang, _p, *rest in json.loads(lab.get("phrase_languages") or "[]"):
                if rest and rest[0] is not None:
                    w = lab["words"]
                    phr.append((rest[0], w[b - 1]["end"] - w[a]["start"], w[a]["start"], w[b - 1]["end"], rid))
    if phr:
        total = sum(d for _, d, *_ in phr)
        cuts = {q: sum(d for p, d, *_ in phr if p < q) / total for q in (0.05, 0.1, 0.2, 0.3, 0.5)}
        print("phrase seconds with P(declared) below: " + ", ".join(f"{q}: {v:.1%}" for q, v in cuts.items()))
    no_conf = dict(min_confidence=0.0)
    configs = [("tiny.en, field defaults", tiny_labels, FilterConfig(**FIELD)),
               ("tiny.en, today's defaults", tiny_labels, FilterConfig(**TODAY)),
               # a build with tiny.en has the shipped confidence off (fitted on base's labels)
               ("tiny.en, shipped defaults", tiny_labels, FilterConfig(**no_conf)),
               ("base, field defaults", base_labels, FilterConfig(**FIELD)),
               ("base, today's defaults", base_labels, FilterConfig(**TODAY)),
               ("base, rules, no agreement/conf.", base_labels, FilterConfig(**no_conf)),
               ("base+agr. uncertain, no conf.", agree_unc, FilterConfig(**no_conf)),
               ("base+agr. all, no conf.", agree_all, FilterConfig(**no_conf)),
               ("base, no agreement, shipped conf.", base_labels, FilterConfig()),
               ("SHIPPED (base+agr. uncertain)", agree_unc, FilterConfig()),
               ("shipped, but base greedy", greedy_unc, FilterConfig()),
               ("base+agr. all, shipped", agree_all, FilterConfig()),
               ("shipped, agreement CER <= 0.15", agree_unc, FilterConfig(max_agreement_cer=0.15)),
               ("shipped, agreement CER <= 0.10", agree_unc, FilterConfig(max_agreement_cer=0.10)),
               ("agr. all, CER <= 0.10, no conf.", agree_all, FilterConfig(max_agreement_cer=0.10, **no_conf))]
    results = {}
    domains = sorted({f.name.split("-")[0] for f, _a, _s in segs.values()})
    head = f"{'config':<34}{'domain':<11}{'segs':>5}{'kept':>5}{'WER>0.3':>8}{'WER kept':>9}{'good kept':>10}" \
           f"{'good s':>8}{'foreign':>8}{'nospeech':>9}"
    print(head)
    for name, labels, filt in configs:
        rows = manifest(segs, labels, FilterConfig(**{**filt.model_dump(), **settings}), raw)
        for r in rows:
            r.update(score(r, words.get(r["source_uri"].rsplit("/", 1)[-1], []), truth))
        if args.rows:
            with open(args.rows, "a") as out:
                for r in rows:
                    lab = r.get("_label") or {}
                    out.write(json.dumps({"config": name, **{k: v for k, v in r.items() if k != "_label"},
                                          "phrase_languages": lab.get("phrase_languages")}, default=str) + "\n")
        results[name] = {}
        for dom in [*domains, "overall"]:
            sub = [r for r in rows if dom == "overall" or r["domain"] == dom]
            m = results[name][dom] = figures(sub)
            print(f"{name:<34}{dom:<11}{m['segments']:>5}{m['kept']:>5}{m['bad_share']:>8.1%}{m['wer_kept']:>9.3f}"
                  f"{m['good_kept_share']:>10.1%}{m['good_kept_s']:>8.1f}{m['foreign_kept']:>8}{m['nospeech_kept']:>9}")

    print("\nfixtures, base, declared language: CER per language")
    fx = WhisperLabeler(model="base", batch_size=4)
    cer = {}
    for lang, items in FIXTURES.items():
        refs, hyps = [], []
        for name, ref in items:
            audio = decode(Path(args.fixtures) / name)
            (label,) = fx.label(audio.pcm, [(0.0, audio.duration)], language=lang)
            refs.append(ref)
            hyps.append(label["text"])
        cer[lang] = char_error_rate(" ".join(refs), " ".join(hyps))
        print(f"  {lang}: CER {cer[lang]:.3f}  ({' | '.join(hyps)})")

    decode_s = base_s - lang_s
    unc_audio = sum(segs[rid][2][i][1] - segs[rid][2][i][0] for rid, idx in uncertain.items() for i in idx)
    cost = {"tiny.en first pass, greedy": (tiny_s, tiny_s), "base first pass, greedy": (greedy_s, greedy_s),
            f"base first pass, beam {BEAM_SIZE} (decode only)": (decode_s, decode_s),
            "+ language per segment": (lang_s - phrase_s, decode_s + lang_s - phrase_s),
            "+ language per phrase": (phrase_s, base_s),
            "+ agreement, uncertain only (tiny.en)": (second_s, base_s + second_s),
            "+ agreement, every segment (tiny.en)": (tiny_s, base_s + tiny_s)}
    print(f"\ncost on {audio_s:.0f} audio-s ({unc_audio:.0f} s of it uncertain: mean word prob < 0.8), one CPU "
          "process, int8; audio-s per wall-s of the step alone and of the whole labelling so far:")
    for step, (alone, total) in cost.items():
        print(f"  {step:<40}{alone:>7.1f} s  {audio_s / alone if alone else float('inf'):>7.2f} audio-s/s alone"
              f"  {audio_s / total:>7.2f} audio-s/s cumulative")
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": results, "cer": cer, "cost_seconds": cost,
                                               "audio_seconds": audio_s}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
