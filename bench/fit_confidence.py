"""Fit the shipped combined confidence on gen-audio gold, and measure it held out by recording and by domain.

Calibration gold only: ``reference/gen_audio.py`` at several seeds (its voices, texts, four
domains: audiobook, phone, street, radio); never ``bench/holdout.py``'s set, which only measures.
Each seed's audio is segmented and labelled as ``bench/quality.py`` does (base, language per
segment and phrase, tiny.en as the second opinion; labels cached per seed), put through the
build's trimming and filter, and every piece is scored against the gold words, timed by
espeak-ng's own word events (``bench/espeak_words.py``). The model is fitted on the pieces'
signals with the second opinion asked on every segment; it is measured (and its threshold
chosen) on the signals the shipped pipeline gives (second opinion only where uncertain, a
missing agreement_cer filled as ``fit_model`` says).

The confidence model (``pipelines.confidence``, every feature) is fitted on the pieces the other
rules let through (the shipped defaults' rules stay on: the model is one more rule on top).
Held-out figures, each piece scored by a model (and a threshold) fitted without its fold:
by recording (2 folds by a hash of the recording), leave one domain out, leave one seed out.
The shipped threshold is chosen on the pooled out-of-fold scores of the leave-one-domain-out
run (the most good-label seconds kept with a kept share of WER > 0.3 at most ``--target``),
so it is a threshold that held on a domain the model had not seen. ``--write`` saves the model
fitted on all seeds and that threshold as ``pipelines/shipped_confidence.py``.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import re
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.espeak_words import EspeakWords  # noqa: E402
from bench.quality import figures, gold_words, label_all, manifest, score, segments_of, with_agreement  # noqa: E402
from pipelines.asr import WhisperLabeler, default_beam_size  # noqa: E402
from pipelines.confidence import FEATURES, feature_values, fit  # noqa: E402
from pipelines.config import FilterConfig  # noqa: E402
from reference import gen_audio  # noqa: E402

BAD = 0.3
# rms_dbfs is left out: gen-audio normalises every file's peak, so its loudness hardly varies
# (a scale under 1 dB) and a weight on it would be extrapolated wildly on audio recorded at any level
SHIPPED_FEATURES = tuple(f for f in FEATURES if f != "rms_dbfs")
WITHOUT_CONFIDENCE = dict(min_confidence=0.0, confidence_model=None)
BEAM_SIZE = default_beam_size(multilingual=True)  # base's first pass, as a build decodes it by default


def gold(raw: Path) -> list[dict]:
    """gen-audio's truth rows with ``words`` timed by espeak-ng's word events."""
    timer = EspeakWords()
    rows = [json.loads(line) for line in (raw / "truth.jsonl").read_text().splitlines() if line.strip()]
    for r in rows:
        _audio, words = timer.words(r["text"], r["voice"], int(r["speed"]))
        end = r["end"] - r["start"]
        r["words"] = [[round(r["start"] + min(a, end), 3), round(r["start"] + min(b, end), 3), w] for a, b, w in words]
        r["language"] = "en"
    return rows


HARDER = ("noisier", "babble", "clipped")


def harder(src: Path, dst: Path, seed: int, kind: str, babble_from: Path | None = None) -> None:
    """A harder copy of a gen-audio set (same names and times, so the same truth), each file with:

    ``noisier``  more noise (white, pink or brown, gen-audio's own colours) at 0-12 dB SNR over its speech;
    ``babble``   other people talking underneath: speech of another seed's gen-audio set (other sentences),
                 three voices summed, at 3-12 dB SNR;
    ``clipped``  an overdriven recording: 12-24 dB of gain into hard clipping, then white noise at 15-25 dB.

    None of these is a degradation of ``bench/holdout.py`` (reverberation, 8 kHz companded telephone
    band, brown noise at 3-8 dB), so the hold-out stays unseen."""
    import numpy as np
    import soundfile as sf

    dst.mkdir(parents=True, exist_ok=True)
    truth = [json.loads(line) for line in (src / "truth.jsonl").read_text().splitlines() if line.strip()]
    # noisier: the seed alone, as before the other kinds existed (its copies and label caches stay the same)
    rng = np.random.default_rng(seed if kind == "noisier" else [seed, HARDER.index(kind)])
    others = sorted(p for p in babble_from.iterdir() if p.suffix in (".wav", ".flac")) if babble_from else []
    for f in sorted(p for p in src.iterdir() if p.suffix in (".wav", ".flac")):
        x, sr = sf.read(str(f), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        spans = [x[int(t["start"] * sr):int(t["end"] * sr)] for t in truth if t["file"] == f.name]
        speech = np.concatenate(spans) if spans else x
        rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) or 1e-9
        if kind == "clipped":
            y = np.clip(x * np.float32(10 ** (rng.uniform(12, 24) / 20)), -1.0, 1.0)
            noise, snr = rng.standard_normal(len(x)).astype(np.float32), float(rng.uniform(15, 25))
        elif kind == "babble":
            noise = np.zeros(len(x), dtype=np.float32)
            for _ in range(3):
                o, osr = sf.read(str(others[int(rng.integers(len(others)))]), dtype="float32", always_2d=True)
                o = o.mean(axis=1)
                if osr != sr:  # gen-audio's phone domain is 8 kHz: linear resampling is enough for babble
                    o = np.interp(np.arange(int(len(o) * sr / osr)) * osr / sr, np.arange(len(o)), o).astype(np.float32)
                o = np.tile(o, int(np.ceil(len(x) / len(o))) + 1)
                off = int(rng.integers(len(o) - len(x)))
                noise += o[off:off + len(x)]
            y, snr = x, float(rng.uniform(3, 12))
        else:
            noise = gen_audio._coloured_noise(rng, len(x), sr, str(rng.choice(["white", "pink", "brown"])))
            y, snr = x, float(rng.uniform(0.0, 12.0))
        y = y + noise * np.float32(rms / (10 ** (snr / 20)) / (float(np.std(noise)) or 1e-9))
        sf.write(str(dst / f.name), gen_audio._normalise_peak(y.astype(np.float32)), sr, subtype="PCM_16")
    (dst / "truth.jsonl").write_text((src / "truth.jsonl").read_text())


def labelled(raw: Path, cache: Path, segs: dict, beam_size: int) -> dict:
    """base's labels (decoded with ``beam_size``) and tiny.en's (greedy: the second opinion), cached."""
    if cache.exists():
        saved = json.loads(cache.read_text())
        return {k: {rid: {int(i): lab for i, lab in labs.items()} for rid, labs in saved[k].items()}
                for k in ("base", "tiny")} | {"seconds": saved["seconds"]}
    base = WhisperLabeler(model="base", batch_size=8, beam_size=beam_size)
    base_labels, base_s = label_all(segs, base)
    tiny_labels, tiny_s = label_all(segs, WhisperLabeler(model="tiny.en", batch_size=8, beam_size=1))
    out = {"base": base_labels, "tiny": tiny_labels, "seconds": [base_s, tiny_s]}
    cache.write_text(json.dumps(out))
    return out


def scored_rows(seed: int, segs: dict, labels: dict, filt: FilterConfig, raw: Path, truth: list[dict]) -> list[dict]:
    words = gold_words(truth)
    rows = manifest(segs, labels, filt, raw)
    for r in rows:
        r.update(score(r, words.get(r["source_uri"].rsplit("/", 1)[-1], []), truth))
        r["recording_id"] = f"{seed}/{r['recording_id']}"
        r["seed"] = str(seed)
    return [r for r in rows if r["nref"] or (r["text"] or "").strip()]  # pieces with no words and no text: nothing to judge


def choose(rows: list[dict], scores: list[float], target: float) -> float | None:
    """The threshold keeping the most good-label seconds with a kept bad share at most ``target``
    (ties: the lowest threshold); None when no threshold keeps anything within the target."""
    best = None
    for t in sorted({s for s in scores if s is not None}):
        kept = [r for r, s in zip(rows, scores) if s is not None and s >= t]
        if not kept:
            continue
        bad = sum(r["wer"] > BAD for r in kept) / len(kept)
        good = sum(r["dur"] for r in kept if r["wer"] <= 0.1 and r["nref"])
        if bad <= target and (best is None or good > best[1] + 1e-9):
            best = (t, good)
    return best[0] if best else None


def fit_model(rows: list[dict], features: tuple[str, ...] = SHIPPED_FEATURES):
    """Fitted on each piece's signals with the second opinion asked everywhere (``_fit``), so that the
    model learns what agreement says. A missing value is filled from the pieces the other rules let
    through (those the model judges in practice; a mean over every piece, junk included, would make
    a missing word probability count as a poor one): a missing agreement_cer (a confident first pass,
    not asked by the shipped pipeline) with the mean over such pieces, any other with the mean."""
    fit_rows = [r["_fit"] for r in rows]
    judged = [r["_fit"] for r in rows if r["decision"] == "keep"] or fit_rows
    fill = {}
    vectors = [x for x in (feature_values(r, features) for r in judged) if x is not None]
    for k, name in enumerate(features):
        values = [x[k] for x in vectors if x[k] == x[k]]  # NaN: missing
        if values:
            fill[name] = sum(values) / len(values)
    unasked = [r["_fit"]["agreement_cer"] for r in rows if r["decision"] == "keep"
               and r["agreement_cer"] is None and r["_fit"]["agreement_cer"] is not None]
    if unasked and "agreement_cer" in features:
        fill["agreement_cer"] = sum(unasked) / len(unasked)
    return fit(fit_rows, [r["wer"] <= BAD for r in rows], features=features, fill=fill)


def out_of_fold(rows: list[dict], fold_of: list, target: float, extra: list[dict], extra_fold: list
                ) -> tuple[list[float | None], dict]:
    """Each row scored by a model fitted on the other folds (and ``extra`` rows of the other folds);
    each fold's own threshold too (chosen on ``rows`` of the other folds)."""
    scores: list[float | None] = [None] * len(rows)
    thresholds = {}
    for k in sorted(set(fold_of)):
        train = [r for r, f in zip(rows, fold_of) if f != k]
        more = [r for r, f in zip(extra, extra_fold) if f != k]
        model = fit_model(train + more)
        thresholds[k] = choose(train, [model.score(r) for r in train], target)
        for i, f in enumerate(fold_of):
            if f == k:
                scores[i] = model.score(rows[i])
    return scores, thresholds


def kept_figures(rows: list[dict], keep: list[bool]) -> dict:
    return figures([{**r, "decision": "keep" if k else "reject"} for r, k in zip(rows, keep)])


def line(name: str, m: dict) -> str:
    return (f"  {name:<34}{m['segments']:>5}{m['kept']:>5}{m['bad_share']:>8.1%}{m['wer_kept']:>9.3f}"
            f"{m['good_kept_share']:>10.1%}{m['good_kept_s']:>8.1f}")


def load_pieces(work: Path, seeds: list[int], harder_seeds: list[int], minutes: float, when: str,
                settings: dict | None = None, kinds: tuple[str, ...] = HARDER,
                beam_size: int = BEAM_SIZE) -> list[dict]:
    """Every scored piece of every set (gen-audio per seed, then the harder copies), each with its
    signals as the shipped pipeline gives them and, in ``_fit``, with the second opinion asked everywhere."""
    base_config = FilterConfig(**{**(settings or {}), **WITHOUT_CONFIDENCE})  # the rules, the confidence off
    rows: list[dict] = []
    missed = 0
    clean_of = lambda s: work / f"gen-{s}-{minutes:g}"  # noqa: E731
    for s in sorted(set(seeds) | set(harder_seeds)):
        if not (clean_of(s) / "truth.jsonl").exists():
            gen_audio.generate(clean_of(s), minutes=minutes, seed=s)
    for seed, kind in [(s, None) for s in seeds] + [(s, k) for k in kinds for s in harder_seeds]:
        raw = clean_of(seed)
        if kind:
            raw = work / f"gen-{seed}-{minutes:g}-{kind}"
            if not (raw / "truth.jsonl").exists():
                other = harder_seeds[(harder_seeds.index(seed) + 1) % len(harder_seeds)]
                harder(clean_of(seed), raw, seed, kind, babble_from=clean_of(other))
        truth = gold(raw)
        segs = segments_of(sorted(p for p in raw.iterdir() if p.suffix in (".wav", ".flac")))
        start = time.perf_counter()
        beam = "" if beam_size == 1 else f"-beam{beam_size}"  # greedy labels keep the caches' first name
        got = labelled(raw, work / f"labels-{raw.name.removeprefix('gen-')}{beam}.json", segs, beam_size)
        name = f"{seed}-{kind}" if kind else str(seed)
        print(f"seed {name}: {len(segs)} files, {sum(len(s) for *_, s in segs.values())} segments, labels "
              f"{time.perf_counter() - start:.1f} s (base {got['seconds'][0]:.1f} s, tiny.en {got['seconds'][1]:.1f} s "
              "when decoded)")
        shipped = scored_rows(name, segs, with_agreement(got["base"], got["tiny"], when), base_config, raw, truth)
        everywhere = with_agreement(got["base"], got["tiny"], "all")
        # a segment the shipped pipeline asks no second opinion on is not cut into sentences: its
        # pieces, asked everywhere, are those of the same trimming without sentence cuts
        whole = base_config.model_copy(update={"trim_sentences": False})
        by_id = {r["segment_id"]: r for r in scored_rows(name, segs, everywhere, whole, raw, truth)
                 + scored_rows(name, segs, everywhere, base_config, raw, truth)}
        for r in shipped:
            # a piece the second opinion everywhere cuts otherwise (disputed words) is fitted on its own signals
            r["_fit"] = by_id.get(r["segment_id"], r)
            missed += r["_fit"] is r
        rows += shipped
    if missed:
        print(f"{missed} pieces have no twin asked everywhere: fitted on their shipped signals")
    return rows


# a harder copy stays in its original's fold (same sentences, same voices)
FOLDS = {
    "by recording (2 folds)": lambda r: int(hashlib.sha256(re.sub(r"-[a-z]+/", "/", r["recording_id"]).encode())
                                           .hexdigest(), 16) % 2,
    "leave one domain out": lambda r: r["domain"],
    "leave one seed out": lambda r: r["seed"].split("-")[0],
}


def held_out(rows: list[dict], cand: list[dict], extra: list[dict], target: float) -> dict[str, list]:
    """Print each fold scheme's figures with each fold's own threshold; the out-of-fold scores of ``cand``."""
    pooled = {}
    cand_idx = {id(r): i for i, r in enumerate(cand)}
    for name, key in FOLDS.items():
        fold_of = [key(r) for r in cand]
        scores, thresholds = out_of_fold(cand, fold_of, target, extra, [key(r) for r in extra])
        pooled[name] = scores
        keep_fold = [s is not None and thresholds[f] is not None and s >= thresholds[f] for s, f in zip(scores, fold_of)]
        keep_all = [id(r) in cand_idx and keep_fold[cand_idx[id(r)]] for r in rows]
        print(line(f"{name}, each fold's threshold", kept_figures(rows, keep_all)))
        for f in sorted(set(fold_of), key=str):
            sub = [i for i, g in enumerate(fold_of) if g == f]
            t = thresholds[f] if thresholds[f] is None else round(thresholds[f], 3)
            print(line(f"    held out: {f} (t={t})", kept_figures([cand[i] for i in sub], [keep_fold[i] for i in sub])))
    return pooled


def with_pooled_threshold(cand: list[dict], pooled: dict[str, list], chosen: float) -> None:
    for name, scores in pooled.items():
        print(line(f"{name}, pooled threshold", kept_figures(cand, [s is not None and s >= chosen for s in scores])))
    lodo = pooled["leave one domain out"]
    for cer in (0.25, 0.2, 0.15, 0.1):  # a stricter agreement on top
        keep = [s is not None and s >= chosen and (r["agreement_cer"] is None or r["agreement_cer"] <= cer)
                for r, s in zip(cand, lodo)]
        print(line(f"LODO, pooled threshold, agreement <= {cer}", kept_figures(cand, keep)))
    for cer in (0.2, 0.15, 0.1):  # ... or instead of the confidence
        keep = [r["agreement_cer"] is None or r["agreement_cer"] <= cer for r in cand]
        print(line(f"no confidence, agreement <= {cer}", kept_figures(cand, keep)))


def write_shipped(model, threshold: float, args, n_fitted: int, n_judged: int) -> Path:
    fitted = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in model.to_dict().items()}
    settings = "".join(f" --set {item}" for item in args.set)
    text = f'''"""The shipped combined confidence (``FilterConfig.confidence_model`` and ``min_confidence``).

Fitted by ``bench/fit_confidence.py --seeds {args.seeds} --harder {args.harder} --harder-seeds
{args.harder_seeds} --minutes {args.minutes:g} --when {args.when} --target {args.target} --fit-on {args.fit_on}
--beam-size {args.beam_size}{settings}`` on gen-audio gold only (reference/gen_audio.py: its voices, texts and four domains, and harder copies:
{args.harder}; see ``harder`` there; {n_fitted} trimmed pieces ({args.fit_on}: the other default rules
let {n_judged} through)), never on bench/holdout.py's set. The threshold was chosen on
leave-one-domain-out scores (each piece scored by a model fitted without its domain) for a kept
share of WER > 0.3 of at most {args.target:.0%}.
"""

MODEL = {json.dumps(fitted, indent=4)}
THRESHOLD = {round(threshold, 4)}
MODEL_NAME = "base"  # the labels it was fitted on; a build with another model ...
BEAM_SIZE = {args.beam_size}  # ... or another first-pass beam width has it off
'''
    out = Path(__file__).resolve().parents[1] / "pipelines" / "shipped_confidence.py"
    out.write_text(text)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="/tmp/fit-confidence", help="gen-audio and label caches live here")
    parser.add_argument("--seeds", default="12,31,32,33,34,35")
    parser.add_argument("--harder", default=",".join(HARDER), help="kinds of harder copies: " + ", ".join(HARDER))
    parser.add_argument("--harder-seeds", default="12,31,32,33,34,35",
                        help="seeds whose gen-audio also gets each kind of harder copy")
    parser.add_argument("--minutes", type=float, default=4.0, help="gen-audio minutes per seed")
    parser.add_argument("--target", type=float, default=0.02, help="kept share of WER > 0.3 to stay within")
    parser.add_argument("--when", choices=("uncertain", "all"), default="uncertain", help="second opinion")
    parser.add_argument("--fit-on", choices=("candidates", "all"), default="candidates",
                        help="fit on the pieces the other rules let through, or on every piece with words")
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                        help="a filter setting other than its default, for the rules under the model "
                             "(e.g. trim_disputed_prob=0.6; repeatable)")
    parser.add_argument("--beam-size", type=int, default=BEAM_SIZE,
                        help="base's first-pass beam width (the build's default: %(default)s); tiny.en's second "
                             "opinion is greedy, as in a build")
    parser.add_argument("--write", action="store_true", help="write pipelines/shipped_confidence.py")
    args = parser.parse_args()
    ints = lambda text: [int(s) for s in text.split(",") if s]  # noqa: E731
    settings = dict(item.split("=", 1) for item in args.set)
    kinds = tuple(k for k in args.harder.split(",") if k)
    unknown = sorted(set(kinds) - set(HARDER))
    if unknown:
        parser.error(f"--harder: unknown kind(s) {', '.join(unknown)}; known: {', '.join(HARDER)}")
    rows = load_pieces(Path(args.work), ints(args.seeds), ints(args.harder_seeds), args.minutes, args.when, settings,
                       kinds, args.beam_size)
    cand = [r for r in rows if r["decision"] == "keep"]
    extra = [r for r in rows if r["decision"] != "keep" and r["nref"]] if args.fit_on == "all" else []
    print(f"\n{len(rows)} pieces, {len(cand)} let through by the other rules; WER > {BAD}: "
          f"{sum(r['wer'] > BAD for r in cand)} of them")
    print(f"  {'(gen-audio, held out)':<34}{'segs':>5}{'kept':>5}{'WER>0.3':>8}{'WER kept':>9}{'good kept':>10}{'good s':>8}")
    print(line("shipped rules, no confidence", figures(rows)))
    pooled = held_out(rows, cand, extra, args.target)
    chosen = choose(cand, pooled["leave one domain out"], args.target)
    print(f"\nthreshold on the pooled leave-one-domain-out scores for a kept bad share <= {args.target:.0%}: {chosen}")
    if chosen is not None:
        with_pooled_threshold(cand, pooled, chosen)
    # gen-audio is English: the shipped model judges English segments only
    model = dataclasses.replace(fit_model(cand + extra), languages=("en",))
    print("\nmodel on every seed:", json.dumps({f: round(w, 3) for f, w in zip(model.features, model.weights)}),
          "bias", round(model.bias, 3))
    if args.write and chosen is not None:
        print(f"wrote {write_shipped(model, chosen, args, len(cand + extra), len(cand))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
