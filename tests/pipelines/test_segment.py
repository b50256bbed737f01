import pytest

from pipelines.segment import pack_segments

KW = dict(min_seconds=2.0, max_seconds=30.0, max_gap=2.0, pad=0.2)


def test_close_regions_pack_toward_the_maximum():
    speech = [(1.0, 4.0), (5.0, 9.0), (10.0, 20.0), (21.0, 28.0), (29.0, 35.0)]
    segs = pack_segments(speech, 40.0, **KW)
    assert segs[0] == (0.8, 28.2)  # 1..28 joined: 27 s + padding <= 30
    assert all(b - a <= 30.0 + 1e-9 for a, b in segs)
    assert segs[1][0] >= segs[0][1], "segments never overlap"


def test_a_long_gap_separates_segments():
    segs = pack_segments([(1.0, 3.0), (8.0, 10.0)], 12.0, **KW)
    assert segs == [(0.8, 3.2), (7.8, 10.2)]


def test_long_speech_is_cut_into_equal_parts():
    segs = pack_segments([(0.0, 100.0)], 100.0, **KW)
    assert len(segs) == 4
    assert all(b - a <= 30.0 for a, b in segs)
    assert segs[0][0] == 0.0 and segs[-1][1] == 100.0


def test_padding_stays_inside_the_recording_and_between_neighbours():
    segs = pack_segments([(0.05, 2.0), (4.3, 6.0)], 6.1, min_seconds=1, max_seconds=30, max_gap=2.0, pad=0.5)
    assert segs[0][0] == 0.0 and segs[-1][1] == 6.1
    assert segs[0][1] <= segs[1][0]


def test_times_are_whole_milliseconds():
    for a, b in pack_segments([(1.23456, 5.98765)], 10.0, **KW):
        assert round(a * 1000) == a * 1000 and round(b * 1000) == b * 1000


def test_no_speech_gives_no_segments_and_bad_ranges_fail():
    assert pack_segments([], 10.0, **KW) == []
    with pytest.raises(ValueError, match="min_seconds"):
        pack_segments([], 10.0, min_seconds=5, max_seconds=5, max_gap=1, pad=0)
