"""The shipped combined confidence (``FilterConfig.confidence_model`` and ``min_confidence``).

Fitted by ``bench/fit_confidence.py --seeds 12,31,32,33,34,35 --harder noisier,babble,clipped --harder-seeds
12,31,32,33,34,35 --minutes 4 --when uncertain --target 0.02 --fit-on candidates``
on gen-audio gold only (reference/gen_audio.py: its voices, texts and four domains, and harder copies:
noisier,babble,clipped; see ``harder`` there; 376 trimmed pieces (candidates: the other default rules
let 376 through)), never on bench/holdout.py's set. The threshold was chosen on
leave-one-domain-out scores (each piece scored by a model fitted without its domain) for a kept
share of WER > 0.3 of at most 2%.
"""

MODEL = {
    "mean": [
        -0.2666074793307931,
        0.13011926999117465,
        0.9892937006361309,
        15.34870496271652,
        1.33588027475424,
        0.8109109042553192,
        0.11090664893617021,
        0.6098936170212765
    ],
    "scale": [
        0.1451124746609269,
        0.12589409611110786,
        0.2769262557440726,
        3.2422100481832348,
        0.9124982769837803,
        0.0871652686373944,
        0.14325181140826476,
        0.3061829454366764
    ],
    "weights": [
        0.4031358489169806,
        -0.1900345812355373,
        1.017457052485928,
        -0.3534864654083038,
        -0.27144239042936275,
        0.4877504706280886,
        -0.8382321965558206,
        -0.012913412093295799
    ],
    "bias": 2.3792355170961503,
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
        -0.2666074793307931,
        0.13011926999117465,
        0.9892937006361305,
        15.34870496271653,
        1.335880274754239,
        0.8109109042553191,
        0.15493260869565217,
        0.6098936170212765
    ],
    "languages": [
        "en"
    ]
}
THRESHOLD = 0.932
MODEL_NAME = "base"  # the labels it was fitted on; a build with another model has it off
