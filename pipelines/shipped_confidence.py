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
        0.11007947882736158,
        0.6098936170212765
    ],
    "scale": [
        0.1451124746609269,
        0.12589409611110786,
        0.2769262557440726,
        3.2422100481832348,
        0.9124982769837803,
        0.0871652686373944,
        0.13323324992218366,
        0.3061829454366764
    ],
    "weights": [
        0.4222448667828264,
        -0.26093667353544286,
        0.9031109887392551,
        -0.32923222538400754,
        -0.04651898577855708,
        0.44389431259925505,
        -1.1684775380795627,
        -0.07246992907604692
    ],
    "bias": 2.5169190191688338,
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
        0.2759695652173913,
        0.6098936170212765
    ]
}
THRESHOLD = 0.9595
MODEL_NAME = "base"  # the labels it was fitted on; a build with another model has it off
