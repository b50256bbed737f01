"""Reference-labelled audio: the ``gen-audio`` generator and releases built from transcripts.

Above ``corpus`` (it writes releases through ``corpus.release``) and beside ``pipelines``: the
build never needs it; tests, benchmarks, calibration gold and the demo do.
"""
