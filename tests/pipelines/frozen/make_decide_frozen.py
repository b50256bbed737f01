"""Generate decide_frozen.json from decide() as it was before the rules became classes (run once, at 765bd97)."""
import json, random, sys
sys.path.insert(0, ".")
from pipelines.config import FilterConfig
from pipelines.confidence import fit
from pipelines.filter import decide

rnd = random.Random(20261130)
TEXTS = ["", "   ", "the train left the station on time today", "hi", "x" * 200, "no no no no no no way",
         "we we we we we we we we we go go go", "the train left " + "a" * 30, "Thank you for watching!",
         "Thank you.", "you", "and then we all went home to have a good long dinner together with friends",
         "word " * 60, "Bye bye.", "please subscribe to my channel for more"]
def row():
    start = rnd.choice([0.0, 3.2, 100.0])
    dur = rnd.choice([0.4, 0.9, 1.5, 2.5, 5.0, 12.0, 30.8, 31.0])
    declared = rnd.choice([None, "en", "auto", "de"])
    return {"start": start, "end": round(start + dur, 3), "text": rnd.choice(TEXTS),
            "avg_logprob": rnd.choice([None, -2.0, -1.05, -0.6, -0.2, -0.05]),
            "no_speech_prob": rnd.choice([None, 0.01, 0.35, 0.5, 0.7, 0.95]),
            "compression_ratio": rnd.choice([None, 0.9, 1.4, 2.3, 2.6, 3.5]),
            "language": rnd.choice([None, "en", "de", "ru"]),
            "language_probability": rnd.choice([None, 0.2, 0.5, 0.9]),
            "declared_language": declared,
            "mean_word_prob": rnd.choice([None, 0.2, 0.55, 0.65, 0.95]),
            "rms_dbfs": rnd.choice([None, -70.0, -50.0, -30.0, -12.0]),
            "agreement_cer": rnd.choice([None, None, 0.0, 0.2, 0.28, 0.6]),
            "trim_reason": rnd.choice([None, None, None, "low_word_prob_run", "unlabelled_gap", "language_mismatch"])}
rows = [row() for _ in range(300)]
FIELDS = sorted(rows[0])
train = [{"start": 0.0, "end": 5.0, "text": "the train left the station on time today", "avg_logprob": lp,
          "no_speech_prob": 0.05, "compression_ratio": 1.4} for lp in (-0.1, -0.2, -0.3, -0.9, -1.1, -1.3)]
model = fit(train, [True, True, True, False, False, False]).to_dict()
configs = {
    "default": {},
    "strict": {"max_agreement_cer": 0.25, "min_mean_word_prob": 0.0, "min_avg_logprob": -0.5, "max_no_speech_prob": 0.4,
               "max_compression_ratio": 2.0, "max_word_repeats": 2, "min_unique_word_ratio": 0.6,
               "unique_ratio_min_words": 4, "max_word_chars": 10, "phantom_max_dbfs": -25.0,
               "min_language_probability": 0.1, "min_chars_per_second": 5.0, "max_chars_per_second": 20.0,
               "min_seconds": 2.0, "max_seconds": 12.5},
    "confidence": {"min_confidence": 0.5, "confidence_model": model, "min_avg_logprob": -100.0,
                   "max_no_speech_prob": 1.0, "max_compression_ratio": 100.0},
    "loose": {"min_mean_word_prob": 0.7, "max_agreement_cer": 1.0, "min_unique_word_ratio": 0.0,
              "phantom_max_dbfs": -60.0, "phantom_min_no_speech_prob": 0.9},
}
expected = {}
for name, cfg in configs.items():
    t = FilterConfig(**cfg)
    expected[name] = [decide(dict(r), t)[1] for r in rows]
from collections import Counter
for name in configs:
    c = Counter(x for rs in expected[name] for x in rs)
    print(name, len(c), sorted(c.items()))
    print("  distinct orders:", len({tuple(rs) for rs in expected[name]}))
with open(sys.argv[1], "w") as f:
    f.write('{"configs": ' + json.dumps(configs, sort_keys=True) + ',\n "fields": ' + json.dumps(FIELDS) + ',\n "rows": [\n')
    f.write(",\n".join(json.dumps([r[k] for k in FIELDS]) for r in rows))
    f.write('],\n "expected": {\n')
    f.write(",\n".join(f"  {json.dumps(n)}: [\n" + ",\n".join(json.dumps(rs) for rs in expected[n]) + "]" for n in configs))
    f.write("}}\n")
