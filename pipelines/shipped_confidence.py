"""The shipped combined confidence (``FilterConfig.confidence_model`` and ``min_confidence``).

Fitted by ``bench/fit_confidence.py --seeds 12,31,32,33,34,35 --harder noisier,babble,clipped --harder-seeds
12,31,32,33,34,35 --minutes 4 --when uncertain --target 0.02 --fit-on candidates
--beam-size 5`` on gen-audio gold only (reference/gen_audio.py: its voices, texts and four domains, and harder copies:
noisier,babble,clipped; see ``harder`` there; 361 trimmed pieces (candidates: the other default rules
let 361 through)), never on bench/holdout.py's set. The threshold was chosen on
leave-one-domain-out scores (each piece scored by a model fitted without its domain) for a kept
share of WER > 0.3 of at most 2%.
"""

MODEL = {
    "mean": [
        -0.27374177821246,
        0.13477618059716148,
        1.0195109744174453,
        15.652873856527798,
        1.4371575785934303,
        0.8135534626038782,
        0.11702354570637119,
        0.6233265927977839
    ],
    "scale": [
        0.15215722855130484,
        0.12286992372734776,
        0.2819687563223993,
        2.9636502614230245,
        0.9242075387234401,
        0.08444002900929577,
        0.14376654754678564,
        0.3045487232496457
    ],
    "weights": [
        -0.4871071634815575,
        0.22499049978278093,
        0.2173857108643502,
        -0.2858814205943999,
        0.6673767117916359,
        1.5151880889317124,
        -0.5682887104493062,
        -0.009915270930070285
    ],
    "bias": 2.5427755889040267,
    "features": [
        "avg_logprob",
        "no_speech_prob",
        "compression_ratio",
        "chars_per_second",
        "log_duration",
        "mean_word_prob",
        "agreement_cer",
        "language_match"
    ],
    "fill": [
        -0.27374177821246026,
        0.13477618059716148,
        1.0195109744174453,
        15.652873856527801,
        1.4371575785934296,
        0.8135534626038788,
        0.15008000000000002,
        0.6233265927977835
    ],
    "languages": [
        "en"
    ]
}
THRESHOLD = 0.9012
MODEL_NAME = "base"  # the labels it was fitted on; a build with another model ...
BEAM_SIZE = 5  # ... or another first-pass beam width has it off
