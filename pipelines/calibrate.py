"""Calibration: measure label error on a gold set and choose filter thresholds for a target error.

1. **Match.** Gold utterances (JSONL like gen-audio's ``truth.jsonl``: file, start, end, text) are
   joined to the release's segments of the same source file: a gold item and a segment belong
   together when the midpoint of either lies inside the other. Connected groups (one segment and
   its sentences, or one long gold item and its segments) are compared as wholes: WER and CER of
   the joined label text against the joined gold text, given to every segment of the group.
2. **Disagreement.** A group whose label is very confident (avg_logprob and word probabilities
   high) yet far from the gold says more about the gold than about the label: it is flagged as
   gold/label disagreement and never used as truth.
3. **Sweep.** Per domain, the threshold of each filter rule that thresholds one manifest column
   (``pipelines.rules.signal_rules``: avg_logprob, no_speech_prob, compression ratio, mean word
   probability, agreement CER…, the rule itself off for the baseline and applied as the filter
   applies it) and a combined confidence (logistic model over the manifest's signals, fitted on
   the gold groups) is swept; for each threshold: hours kept, share of kept segments with
   WER > 0.3, WER of the kept set, share of good hours (WER <= 0.1) kept.
   Held out: by recording (2 folds, each domain's threshold fitted on the other fold) and by
   domain (model and threshold fitted on the other domains only: ``heldout_other_domains``).
4. **Propose.** Per domain, the combined-confidence threshold with the most hours kept whose share
   of bad segments is at most the target; written as a config fragment that ``refilter`` applies.

Everything is read from the release itself, never from the build's ``work/`` folder (a release
can be calibrated after its work parts are gone, or in another store): the manifest (every
segment, kept or rejected: times, text, the decoder's signals, ``mean_word_prob``, decision) and,
for the kept segments of the groups that could be disagreements, their sample JSON in the shards
(``words``: times and probabilities; only the shards holding them are read). A rejected segment
has no sample JSON, so no words: its word probabilities count through the manifest's
``mean_word_prob``, weighted by the words of its text. (Trimmed pieces do not count towards a
group's confidence; see ``_mean_word_prob``.)
"""
from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass

from corpus.release import Release
from corpus.shards import iter_shard_raw
from corpus.text import char_error_rate, normalize_text, word_error_rate
from pipelines.confidence import FEATURES, fit
from pipelines.config import FilterConfig
from pipelines.filter import decide
from pipelines.rules import signal_rules

BAD_WER = 0.3
GOOD_WER = 0.1
# the thresholds every pipeline in the field copies (avg_logprob > -1, compression < 2.4,
# no_speech < 0.6), with no other rule: the baseline calibration reports beside its own
FIELD_DEFAULTS = FilterConfig(min_mean_word_prob=0.0, min_confidence=0.0)
# the rules the combined confidence replaces (those thresholding one of its features), let through;
# the other rules (repetition, chars/s, duration, empty text…) keep their values
PERMISSIVE = {rule.fields[0]: rule.permissive for rule in signal_rules() if rule.signal in FEATURES}
_WORD = re.compile(r"[\w']+")


@dataclass
class Group:
    segments: list[dict]
    gold: list[dict]
    wer: float = 0.0
    cer: float = 0.0
    disagreement: bool = False
    note: str = ""


def _ends_with(uri: str, file: str) -> bool:
    return uri == file or uri.endswith("/" + file.lstrip("/"))


def match_gold(segments: list[dict], gold: list[dict]) -> tuple[list[Group], list[dict]]:
    """Groups of segments and gold items that cover the same speech; and gold items that matched nothing."""
    by_uri: dict[str, list[dict]] = defaultdict(list)
    for seg in segments:
        by_uri[seg["source_uri"]].append(seg)
    groups, unmatched = [], []
    gold_by_file: dict[str, list[dict]] = defaultdict(list)
    for g in gold:
        gold_by_file[g["file"]].append(g)
    for file, items in gold_by_file.items():
        uris = [u for u in by_uri if _ends_with(u, file)]
        if not uris:
            unmatched.extend(items)
            continue
        segs = sorted((s for u in uris for s in by_uri[u]), key=lambda s: s["start"])
        groups.extend(_components(segs, sorted(items, key=lambda g: g["start"])))
    for group in groups:
        ref = " ".join(g["text"] for g in group.gold)
        hyp = " ".join((s.get("text") or "") for s in group.segments)
        group.wer, group.cer = word_error_rate(ref, hyp), char_error_rate(ref, hyp)
    return groups, unmatched


def _components(segs: list[dict], items: list[dict]) -> list[Group]:
    def linked(s, g):
        sm, gm = (s["start"] + s["end"]) / 2, (g["start"] + g["end"]) / 2
        return s["start"] <= gm < s["end"] or g["start"] <= sm < g["end"]

    parent = list(range(len(segs) + len(items)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, s in enumerate(segs):
        for j, g in enumerate(items):
            if linked(s, g):
                parent[find(i)] = find(len(segs) + j)
    comps: dict[int, Group] = {}
    for i, s in enumerate(segs):
        comps.setdefault(find(i), Group([], [])).segments.append(s)
    for j, g in enumerate(items):
        root = find(len(segs) + j)
        if root in comps:
            comps[root].gold.append(g)
    return list(comps.values())


DISAGREE_MIN_WER = 0.15
DISAGREE_MIN_LOGPROB = -0.25
DISAGREE_MIN_WORD_PROB = 0.85


def flag_disagreements(groups: list[Group], words: dict[str, list[dict]]) -> None:
    """Mark groups whose label is very confident yet far from the gold: the gold is the suspect.

    ``words``: segment id → its words (kept segments, from their sample JSON); a segment without
    them (rejected) counts through its manifest ``mean_word_prob``.

    Measured on the fixtures: the wrong-reference transcripts (garbled or missing words) meet
    labels with avg_logprob >= -0.17 and mean word probability >= 0.92 at WER 0.19-0.29, while
    real label errors (overlapping speakers, other languages, espeak voices) come with
    avg_logprob <= -0.3 or mean word probability <= 0.8.
    """
    for group in groups:
        if not group.gold or group.wer < DISAGREE_MIN_WER:
            continue
        mean_word_prob = _mean_word_prob(group.segments, words)
        logprob = min((s["avg_logprob"] for s in group.segments if s.get("avg_logprob") is not None), default=-9)
        if logprob >= DISAGREE_MIN_LOGPROB and mean_word_prob >= DISAGREE_MIN_WORD_PROB:
            group.disagreement = True
            group.note = (f"label very confident (avg_logprob >= {logprob:.2f}, mean word probability "
                          f"{mean_word_prob:.2f}) yet WER {group.wer:.2f} against the gold")


def _mean_word_prob(segments: list[dict], words: dict[str, list[dict]]) -> float:
    """Mean probability over the words of ``segments``: each word where its sample JSON gives them,
    else the manifest's mean for the segment, once per word of its text. Trimmed pieces are left
    out: trimming kept their words because each was confident, so their mean says nothing of how
    sure the label they were cut from was (on gen-audio, kept pieces whose edges hold a neighbour
    sentence's words reach 0.85-0.90 at WER 0.27-1.3); a group of pieces only counts as unsure."""
    total = count = 0.0
    for seg in segments:
        if seg.get("parent_segment_id"):
            continue
        probs = [w["probability"] for w in words.get(seg["segment_id"]) or []]
        if probs:
            total, count = total + sum(probs), count + len(probs)
        elif seg.get("mean_word_prob") is not None:
            n = max(1, len(_WORD.findall(seg.get("text") or "")))
            total, count = total + seg["mean_word_prob"] * n, count + n
    return total / count if count else 0.0


def _segment_rows(groups: list[Group]) -> list[dict]:
    rows = []
    for group in groups:
        if group.disagreement or not group.gold:
            continue
        for seg in group.segments:
            rows.append({**seg, "wer": group.wer, "cer": group.cer, "duration": seg["end"] - seg["start"]})
    return rows


def evaluate(rows: list[dict], keep: list[bool]) -> dict:
    """Yield and error of keeping ``rows[i]`` where ``keep[i]``."""
    kept = [r for r, k in zip(rows, keep) if k]
    good_hours = sum(r["duration"] for r in rows if r["wer"] <= GOOD_WER)
    kept_secs = sum(r["duration"] for r in kept)
    return {
        "segments": len(rows), "kept": len(kept),
        "hours_kept": kept_secs / 3600,
        "share_bad": (sum(r["wer"] > BAD_WER for r in kept) / len(kept)) if kept else 0.0,
        "wer_kept": (sum(r["wer"] * r["duration"] for r in kept) / kept_secs) if kept_secs else 0.0,
        "good_hours_kept": (sum(r["duration"] for r in kept if r["wer"] <= GOOD_WER) / good_hours) if good_hours else None,
    }


def _sweep(rows, values, keep_high, base_keep) -> list[dict]:
    curve = []
    candidates = sorted({v for v in values if v is not None})
    for t in candidates:
        keep = [b and v is not None and (v >= t if keep_high else v <= t) for v, b in zip(values, base_keep)]
        curve.append({"threshold": float(t), **evaluate(rows, keep)})
    return curve


def sweep_rule(rows: list[dict], rule, config: FilterConfig) -> list[dict]:
    """Yield and error of ``rule`` at each value of its signal in ``rows`` as its threshold, on top of
    the other rules of ``config`` (the rule itself off for them)."""
    name = rule.fields[0]
    without = config.model_copy(update={name: None})
    base_keep = [decide(r, without)[0] == "keep" for r in rows]
    curve = []
    for t in sorted({r.get(rule.signal) for r in rows} - {None}):
        at = config.model_copy(update={name: t})
        keep = [b and not rule.check(r, at) for r, b in zip(rows, base_keep)]
        curve.append({"threshold": float(t), **evaluate(rows, keep)})
    return curve


def choose(curve: list[dict], target_share_bad: float) -> dict | None:
    """The point with the most hours kept whose share of bad segments is within the target."""
    ok = [p for p in curve if p["share_bad"] <= target_share_bad and p["kept"] > 0]
    return max(ok, key=lambda p: (p["hours_kept"], -p["share_bad"])) if ok else None


def heldout(rows: list[dict], base_keep: list[bool], target_share_bad: float, folds: int = 2) -> dict[str, dict]:
    """Per-domain yield and error of the calibrated rule on recordings it was not fitted on.

    Recordings are split into ``folds`` by a hash of their id; for each fold the confidence model
    and each domain's threshold are fitted on the other folds and applied to this one.
    """
    import hashlib

    fold_of = [int(hashlib.sha256(r["recording_id"].encode()).hexdigest(), 16) % folds for r in rows]
    keep = [False] * len(rows)
    for k in range(folds):
        train = [i for i in range(len(rows)) if fold_of[i] != k]
        test = [i for i in range(len(rows)) if fold_of[i] == k]
        try:
            model = fit([rows[i] for i in train], [rows[i]["wer"] <= BAD_WER for i in train])
        except ValueError:
            continue  # a fold without both classes: nothing can be fitted; its recordings stay rejected
        scores = [model.score(r) for r in rows]
        for domain in {rows[i]["domain"] for i in test}:
            tr = [i for i in train if rows[i]["domain"] == domain]
            chosen = choose(_sweep([rows[i] for i in tr], [scores[i] for i in tr], True, [base_keep[i] for i in tr]),
                            target_share_bad) if tr else None
            for i in test:
                if rows[i]["domain"] == domain and chosen is not None:
                    keep[i] = base_keep[i] and scores[i] is not None and scores[i] >= chosen["threshold"]
    out = {}
    for domain in sorted({r["domain"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["domain"] == domain]
        out[domain] = evaluate([rows[i] for i in idx], [keep[i] for i in idx])
    return out


def heldout_by_domain(rows: list[dict], base_keep: list[bool], target_share_bad: float) -> dict[str, dict]:
    """Per domain, yield and error of a confidence model and threshold fitted on the *other* domains only
    (leave one domain out): what calibration promises for a domain it has no gold for."""
    keep = [False] * len(rows)
    domains = sorted({r["domain"] for r in rows})
    for domain in domains:
        train = [i for i, r in enumerate(rows) if r["domain"] != domain]
        test = [i for i, r in enumerate(rows) if r["domain"] == domain]
        try:
            model = fit([rows[i] for i in train], [rows[i]["wer"] <= BAD_WER for i in train])
        except ValueError:
            continue  # the other domains lack one class: nothing can be fitted; this domain stays rejected
        scores = [model.score(r) for r in rows]
        chosen = choose(_sweep([rows[i] for i in train], [scores[i] for i in train], True,
                               [base_keep[i] for i in train]), target_share_bad)
        if chosen is not None:
            for i in test:
                keep[i] = base_keep[i] and scores[i] is not None and scores[i] >= chosen["threshold"]
    return {d: evaluate([r for r in rows if r["domain"] == d], [k for r, k in zip(rows, keep) if r["domain"] == d])
            for d in domains}


def label_words(release: Release, segments: list[dict]) -> dict[str, list[dict]]:
    """Words (times, probabilities) of the kept ones of ``segments``, from their sample JSON in the
    release's shards; only the shards holding them are read. Rejected segments have no sample."""
    wanted = {s["segment_id"]: s["shard"] for s in segments if s.get("shard")}
    sha256 = {shard["url"]: shard["sha256"] for shard in release.shards()}
    words: dict[str, list[dict]] = {}
    for url in sorted(set(wanted.values())):
        for key, group in iter_shard_raw(release.store, url, sha256=sha256.get(url)):
            if key in wanted and "json" in group:
                words[key] = json.loads(group["json"]).get("words") or []
    return words


def calibrate(release: Release, gold: list[dict], *, target_share_bad: float = 0.02) -> dict:
    """Everything calibration measures and proposes, as a JSON-able dict (saved as calibration.json)."""
    segments = release.manifest().to_pylist()
    groups, unmatched = match_gold(segments, gold)
    suspects = [s for g in groups if g.gold and g.wer >= DISAGREE_MIN_WER for s in g.segments]
    flag_disagreements(groups, label_words(release, suspects))
    rows = _segment_rows(groups)
    if not rows:
        raise ValueError(f"no gold utterance matched a segment of release {release.name} "
                         f"({len(unmatched)} gold items unmatched: check the gold `file` names)")
    defaults = FIELD_DEFAULTS
    current = FilterConfig(**release.config().get("filter", {}))
    base = FilterConfig(**{**current.model_dump(), **PERMISSIVE, "min_confidence": 0.0, "confidence_model": None})
    base_keep = [decide(r, base)[0] == "keep" for r in rows]
    model = fit(rows, [r["wer"] <= BAD_WER for r in rows])
    scores = [model.score(r) for r in rows]
    result = {"target": {"share_bad_max": target_share_bad, "bad_wer": BAD_WER, "good_wer": GOOD_WER},
              "confidence_model": model.to_dict(), "domains": {},
              "disagreements": [{"files": sorted({g["file"] for g in grp.gold}), "wer": grp.wer, "cer": grp.cer,
                                 "note": grp.note} for grp in groups if grp.disagreement],
              "unmatched_gold": len(unmatched)}
    held = heldout(rows, base_keep, target_share_bad)
    held_domain = heldout_by_domain(rows, base_keep, target_share_bad)
    for domain in sorted({r["domain"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["domain"] == domain]
        d_rows = [rows[i] for i in idx]
        curve = _sweep(d_rows, [scores[i] for i in idx], True, [base_keep[i] for i in idx])
        chosen = choose(curve, target_share_bad)
        signals = {rule.fields[0]: sweep_rule(d_rows, rule, base) for rule in signal_rules()}
        result["domains"][domain] = {
            "curve": curve, "chosen": chosen, "signals": signals,
            "default_thresholds": evaluate(d_rows, [decide(r, defaults)[0] == "keep" for r in d_rows]),
            "release_thresholds": evaluate(d_rows, [r["decision"] == "keep" for r in d_rows]),
            "heldout": held[domain],
            "heldout_other_domains": held_domain[domain],
            "all": evaluate(d_rows, [True] * len(d_rows)),
        }
    return result


def thresholds_fragment(result: dict) -> dict:
    """The config fragment refilter applies: confidence model + per-domain minimum confidence."""
    chosen = {d: r["chosen"]["threshold"] for d, r in result["domains"].items() if r["chosen"]}
    if not chosen:
        raise ValueError("no threshold meets the target error in any domain; relax the target or add gold data")
    strictest = max(chosen.values())
    return {"filter": {**PERMISSIVE, "confidence_model": result["confidence_model"], "min_confidence": strictest},
            "domain_filters": {d: {"min_confidence": t} for d, t in chosen.items()}}


def format_report(result: dict) -> str:
    head = (f"{'domain':<12}{'thresholds':<12}{'kept':>6}{'hours':>9}{'good h kept':>13}{'bad share':>11}"
            f"{'WER kept':>10}")
    lines = [head]
    for domain, r in result["domains"].items():
        for label, m in (("default", r["default_thresholds"]), ("calibrated", r["chosen"]),
                         ("held-out", r["heldout"]), ("other doms", r.get("heldout_other_domains"))):
            if m is None:
                lines.append(f"{domain:<12}{label:<12}  (no threshold meets the target)")
                continue
            good = "n/a" if m["good_hours_kept"] is None else f"{m['good_hours_kept']:.0%}"
            lines.append(f"{domain:<12}{label:<12}{m['kept']:>6}{m['hours_kept']:>9.3f}{good:>13}"
                         f"{m['share_bad']:>11.1%}{m['wer_kept']:>10.3f}")
    for d in result["disagreements"]:
        lines.append(f"gold/label disagreement (not used as truth): {', '.join(d['files'])}: {d['note']}")
    return "\n".join(lines)


def round_floats(obj, digits: int = 6):
    if isinstance(obj, float):
        return round(obj, digits) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [round_floats(v, digits) for v in obj]
    return obj


def save(release: Release, result: dict) -> str:
    release.store.put_bytes("calibration.json", json.dumps(round_floats(result), indent=1, sort_keys=True).encode())
    return release.store.url("calibration.json")


__all__ = ["calibrate", "thresholds_fragment", "format_report", "save", "match_gold", "normalize_text"]
