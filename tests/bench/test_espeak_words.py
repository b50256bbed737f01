"""bench/espeak_words.py: word times from libespeak-ng's own word events (the hold-out's and the
calibration gold's reference times)."""
from __future__ import annotations

import ctypes.util
import shutil

import pytest

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None or not ctypes.util.find_library("espeak-ng"),
                                reason="espeak-ng (CLI and library) is needed")


def test_words_come_in_order_and_end_where_the_next_begins():
    from bench.espeak_words import EspeakWords

    # after this sentence (as in the hold-out's reverb-018), espeak-ng reports a zero-length word event at
    # the next sentence's second comma, near its end: it must not end "rained" there (it did, which put
    # "rained" after "hailed" in the reference)
    timer = EspeakWords()
    timer.words("The box was thrown beside the parked truck.", "en-029+f4", 162)
    _audio, words = timer.words("It snowed, rained, and hailed the same morning.", "en-us-nyc+m1", 175)
    assert [w for *_, w in words] == ["it", "snowed", "rained", "and", "hailed", "the", "same", "morning"]
    for (a, b, _w), (c, _d, _v) in zip(words, words[1:]):
        assert a < b <= c + 1e-9, words
    rained, and_ = words[2], words[3]
    assert rained[1] == pytest.approx(and_[0]) and rained[1] - rained[0] < 1.0
