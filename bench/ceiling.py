"""How far could the shipped signals go on a hold-out? A ceiling, fitted on the hold-out itself.

Reads the scored manifest rows ``bench/quality.py --rows`` writes (one file per hold-out set; its
config "SHIPPED (base+agr. uncertain)") and asks, of the candidates (the pieces no rule rejected
but the combined confidence, and with ``--also-judge`` those some other rules rejected too), what
share of the good-label (WER <= 0.1) seconds could be kept with a kept bad share (WER > 0.3,
foreign or no-speech) of at most ``--target``:

``shipped``            the shipped confidence at its shipped threshold deciding over the candidates
                       (without ``--also-judge``: what a build does);
``best threshold``     the shipped confidence at the best threshold *for this set*;
``fitted here``        logistic models of the same signals fitted on this set itself (several
                       regularisations and weights of the bad pieces), the best of them at its
                       best threshold: about the most a re-weighting of these signals could keep.

The last two look at the set's gold, so they are ceilings, never results: nothing here may choose
a default (the shipped ones are fitted on gen-audio gold by ``bench/fit_confidence.py``). When even
``fitted here`` falls short of a goal, no re-weighting or threshold of these signals reaches it;
what is missing is information, i.e. a better signal or better labels. Per set and pooled over
every set given (the pooled model is one fit over all of them).

Usage: python bench/ceiling.py ROWS.jsonl [ROWS.jsonl ...] [--target 0.02] [--also-judge CODE,...]
       [--features NAME,...]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import is_bad, is_good  # noqa: E402
from pipelines.confidence import ConfidenceModel, fit  # noqa: E402
from pipelines.config import FilterConfig  # noqa: E402

L2S, BAD_WEIGHTS = (0.1, 1.0, 10.0), (1, 3, 10)  # the fits tried on the set itself
CONFIG = "SHIPPED (base+agr. uncertain)"  # bench/quality.py's config with the shipped defaults


def kept_figures(kept: list[dict], good_total: float) -> tuple[float, int, int]:
    """(good-label share kept, pieces kept, bad kept)."""
    return sum(r["dur"] for r in kept if is_good(r)) / good_total, len(kept), sum(map(is_bad, kept))


def best_kept(cand: list[dict], scores: list[float | None], good_total: float, target: float) -> tuple[float, int, int]:
    """(good-label share kept, pieces kept, bad kept) at the threshold on ``scores`` that keeps the most
    good-label seconds with a kept bad share <= target (nothing kept: 0)."""
    best = (0.0, 0, 0)
    for t in sorted({s for s in scores if s is not None}):
        kept = [r for r, s in zip(cand, scores) if s is not None and s >= t]
        got = kept_figures(kept, good_total)
        if got[2] <= target * len(kept) and got[0] > best[0]:
            best = got
    return best


def ceiling(rows: list[dict], shipped: ConfidenceModel, threshold: float, target: float,
            extra: tuple[str, ...] = ()) -> dict:
    """The three figures (see the module's doc) for one set's rows; ``extra``: signals the rows carry
    beyond the shipped ones (``bench/more_signals.py``), fitted here beside them."""
    good_total = sum(r["dur"] for r in rows if is_good(r))
    cand = [r for r in rows if r["decision"] == "keep"]
    if not good_total or not cand:
        return {"good_s": good_total, "candidates": len(cand)}
    # as the filter does: a piece in a language the model was not fitted on is not judged by it (passes);
    # one without a score (no label) fails
    judged = lambda m: [m.score(r) if shipped.judges(r) else float("inf") for r in cand]  # noqa: E731
    scores = judged(shipped)
    out = {"good_s": good_total, "candidates": len(cand), "candidates_bad": sum(map(is_bad, cand)),
           "candidates_good_share": kept_figures(cand, good_total)[0],
           "shipped": kept_figures([r for r, s in zip(cand, scores) if s is not None and s >= threshold], good_total),
           "best threshold": best_kept(cand, scores, good_total, target)}
    labels = [not is_bad(r) for r in cand]
    if len(set(labels)) == 2:
        fill = dict(zip(shipped.features, shipped.fill)) if shipped.fill else None
        bad = [r for r in cand if is_bad(r)]
        best = (0.0, 0, 0)
        for l2 in L2S:  # the best of several fits on this set: weaker and stronger regularisation, bad
            for weight in BAD_WEIGHTS:  # pieces counted more (the target is about them)
                here = fit(cand + bad * (weight - 1), labels + [False] * len(bad) * (weight - 1), l2=l2,
                           features=(*shipped.features, *extra), fill=fill)
                best = max(best, best_kept(cand, judged(here), good_total, target))
        out["fitted here"] = best
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="+", help="bench/quality.py --rows output, one file per hold-out set")
    parser.add_argument("--target", type=float, default=0.02, help="kept bad share to stay within")
    parser.add_argument("--also-judge", default="", metavar="CODE,...",
                        help="reasons (rules) whose rejected pieces are candidates too, e.g. disagreement,too_short: "
                             "what the ceiling would be if the confidence judged them instead of the rule")
    parser.add_argument("--features", default="", metavar="NAME,...",
                        help="more signals the rows carry (bench/more_signals.py) for the models fitted here")
    args = parser.parse_args()
    opened = {"low_confidence", *filter(None, args.also_judge.split(","))}
    extra = tuple(filter(None, args.features.split(",")))
    filt = FilterConfig()
    if filt.confidence_model is None:
        parser.error("the default filter has no confidence model")
    shipped, threshold = ConfidenceModel.from_dict(filt.confidence_model), filt.min_confidence
    sets = {}
    for path in args.rows:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        rows = [{**r, "decision": "keep" if set(r["reasons"]) <= opened else "reject"}
                for r in rows if r["config"] == CONFIG]
        if not rows:
            parser.error(f"{path}: no rows of config {CONFIG!r} (bench/quality.py --rows writes them)")
        sets[Path(path).stem] = rows
    if len(sets) > 1:
        sets["pooled"] = [r for rows in list(sets.values()) for r in rows]
    print((f"fitted here with {', '.join(extra)} too; " if extra else "") + f"good-label seconds kept at a kept bad share <= {args.target:.0%} (share, pieces kept, bad kept); "
          f"candidates: pieces rejected by nothing but {', '.join(sorted(opened))}")
    print(f"{'set':<24}{'good s':>8}{'cand.':>6}{'bad':>5}{'cand. good':>11}"
          f"{'shipped':>20}{'best threshold':>20}{'fitted here':>20}")
    cell = lambda v: f"{v[0]:>9.1%} {v[1]:>4} {v[2]:>3}  " if v else f"{'-':>20}"  # noqa: E731
    for name, rows in sets.items():
        c = ceiling(rows, shipped, threshold, args.target, extra)
        if "shipped" not in c:
            print(f"{name:<24}{c['good_s']:>8.1f}{c['candidates']:>6}  nothing to judge")
            continue
        print(f"{name:<24}{c['good_s']:>8.1f}{c['candidates']:>6}{c['candidates_bad']:>5}"
              f"{c['candidates_good_share']:>11.1%}{cell(c['shipped'])}{cell(c['best threshold'])}"
              f"{cell(c.get('fitted here'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
