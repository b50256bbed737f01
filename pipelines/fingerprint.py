"""Audio fingerprints and near-duplicate recordings (same audio re-encoded, trimmed, re-gained, resampled).

Exact duplicates (identical decoded PCM) are caught by the PCM hash at ingest; this module finds
the rest with spectral-peak landmark hashes (Shazam / Panako style):

1. **Spectrogram**: 16 kHz mono PCM → STFT (512-point Hann window, 10 ms hop), magnitudes of the
   250-3720 Hz band only, the band every version of a speech recording keeps (8 kHz telephone
   copies, low-bitrate mp3 with its high band cut, resampled copies).
2. **Peaks**: points that are the maximum of their ±10 frames × ±8 bins neighbourhood, above an
   absolute floor (digital silence and dither give none) and within :data:`PEAK_RANGE_DB` of the
   loudest bin of the surrounding ±1 s. Every test is a comparison between magnitudes of the same
   recording, so a gain change moves no peak; nothing depends on block boundaries, so trimming
   moves none either (it only shifts them in time).
3. **Landmarks**: each peak (anchor) is paired with the first :data:`FAN_OUT` peaks after it in a
   target zone (1-63 frames later, within ±31 bins); ``(f_anchor, f_target - f_anchor, dt)``,
   quantised to 62.5 Hz and 20 ms steps (a peak moved by one bin or frame by a codec mostly
   keeps its hash), is packed into an 18-bit hash stored with the anchor's frame index. Hashes
   are relative in time, so the fingerprint of a trimmed copy is a time-shifted subset of the
   original's. About 10-60 hashes per second of speech, ~3.5 bytes each serialised.

:func:`similarity` matches two fingerprints by hash and builds the histogram of time-offset
differences of the matching pairs; a true duplicate piles its matches into one offset (±1 frame
of jitter is merged), unrelated audio spreads its chance collisions thinly over all offsets.
The score is the share of the smaller fingerprint's hashes that match at that best offset.

:func:`find_near_duplicates` finds candidate pairs over many recordings through an inverted
index (key → its (recording, time) postings, as one key-sorted array; the keys combine two
landmarks of one anchor into 30 bits, so postings stay short in a large corpus): each recording
queries the index once and votes per (other recording, offset); only pairs with enough votes at
one offset are confirmed with :func:`similarity` (and, where both transcripts are given, by
transcript similarity). Cost grows with the number of key collisions, not with the number of
recording pairs.

Thresholds (``THRESHOLD``, ``TEXT_THRESHOLD``) are measured, not guessed: the measurements are
quoted next to the constants, and ``tests/pipelines/test_fingerprint.py`` checks both sides.
"""
from __future__ import annotations

import difflib
import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
N_FFT = 512
HOP = 160                       # 10 ms frames
FRAME_SECONDS = HOP / SAMPLE_RATE
LO_BIN, HI_BIN = 8, 120         # 250 Hz .. 3719 Hz (31.25 Hz bins)
N_BINS = HI_BIN - LO_BIN        # 112 → 7 bits
PEAK_DT, PEAK_DF = 10, 8        # a peak is the max of its (2*PEAK_DT+1) frames x (2*PEAK_DF+1) bins
PEAK_FLOOR_DB = -80.0           # dB re a full-scale sine: below it nothing is a peak (silence, dither)
PEAK_RANGE_DB = 20.0            # a peak must be within this of the loudest bin in the surrounding ±1 s
LOCAL_SECONDS = 1.0
HASH_FQ = 2                     # hash frequencies in 2-bin (62.5 Hz) steps
HASH_DTQ = 2                    # hash time differences in 2-frame (20 ms) steps
FAN_OUT = 5                     # targets per anchor
MAX_DT = 63                     # target zone: 1..63 frames (6 bits)
MAX_DF = 31                     # target zone: ±31 bins (6 bits)
CHUNK_FRAMES = 6000              # spectrogram and peaks a minute at a time
MIN_SECONDS = 1.0               # shorter audio gets an empty fingerprint
MIN_HASHES = 50                 # score denominator floor: a near-empty fingerprint cannot score high
MIN_MATCHES = 10                # fewer aligned matches than this is no match at all

# Thresholds, chosen from measurements (27 real and synthetic recordings of 3-60 s: the shared
# fixtures and gen-audio of three seeds; 16 transformations each; see the module's report):
# - audio: true pairs (mp3 24-128 kbit/s at 8-44.1 kHz, AAC 48k, Opus 24k, -20..+6 dB, resampling
#   via 8/22.05/44.1 kHz, trims of 0.37-5 s, trims + lossy + gain) scored 0.42-1.00 (5th pct 0.61,
#   392 pairs); unrelated pairs (10,543, incl. same-voice espeak-ng speech of other seeds) scored
#   at most 0.015 (0.06 even without the MIN_MATCHES rule). 0.2 is 2x below the lowest true pair
#   and 13x above the highest unrelated one.
THRESHOLD = 0.2
# - transcripts (:func:`text_similarity` of tiny.en transcripts): true pairs 0.18-1.00 (median
#   0.91; the low end is tiny.en hallucinating on 24 kbit/s 8 kHz mp3 of noisy synthetic speech),
#   unrelated median 0.04, max 0.25. Transcripts are too noisy to decide alone, so the text test
#   only vetoes audio matches whose transcripts clearly differ: 0.1 keeps every true pair (1.8x
#   margin) and vetoes 78% of unrelated pairs.
TEXT_THRESHOLD = 0.1

_MAGIC = b"STFP"
_VERSION = 1
_HEADER = struct.Struct("<4sBHHI")   # magic, version, hop, sample_rate/10, n hashes
# candidate search in find_near_duplicates (see _candidates)
CANDIDATE_MIN_ANCHORS = 3
CANDIDATE_SHARE = 0.25
_MAX_POSTINGS = 4096                 # index keys in more postings than this are stop-words
_BATCH_KEYS = 200_000                # query keys per batch in candidate search


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """Landmark hashes (uint32, 18 bits used) and their anchor frame indices (int32, 10 ms frames),
    sorted by time."""

    hashes: np.ndarray
    times: np.ndarray

    def __post_init__(self):
        if self.hashes.shape != self.times.shape or self.hashes.ndim != 1:
            raise ValueError("hashes and times must be 1-d arrays of the same length")

    def __len__(self) -> int:
        return int(self.hashes.size)

    def __eq__(self, other) -> bool:
        return (isinstance(other, Fingerprint) and np.array_equal(self.hashes, other.hashes)
                and np.array_equal(self.times, other.times))

    @property
    def frame_seconds(self) -> float:
        return FRAME_SECONDS

    def to_bytes(self) -> bytes:
        """Compact form for a parquet binary column: header + zlib(hashes, time deltas)."""
        n = len(self)
        deltas = np.diff(self.times, prepend=0).astype("<u4")   # times are sorted: deltas are small
        body = zlib.compress(self.hashes.astype("<u4").tobytes() + deltas.tobytes(), 6)
        return _HEADER.pack(_MAGIC, _VERSION, HOP, SAMPLE_RATE // 10, n) + body

    @classmethod
    def from_bytes(cls, data: bytes) -> "Fingerprint":
        if len(data) < _HEADER.size:
            raise ValueError("not a fingerprint: too short")
        magic, version, hop, rate, n = _HEADER.unpack_from(data)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError(f"not a version-{_VERSION} fingerprint (magic {magic!r}, version {version})")
        if hop != HOP or rate * 10 != SAMPLE_RATE:
            raise ValueError(f"fingerprint made with hop {hop} at {rate * 10} Hz, "
                             f"this module uses {HOP} at {SAMPLE_RATE}")
        raw = zlib.decompress(data[_HEADER.size:])
        if len(raw) != 8 * n:
            raise ValueError(f"corrupt fingerprint: {len(raw)} bytes for {n} hashes")
        hashes = np.frombuffer(raw, "<u4", n).astype(np.uint32)
        times = np.cumsum(np.frombuffer(raw, "<u4", n, offset=4 * n), dtype=np.int64).astype(np.int32)
        return cls(hashes, times)

    @classmethod
    def empty(cls) -> "Fingerprint":
        return cls(np.zeros(0, np.uint32), np.zeros(0, np.int32))


# --------------------------------------------------------------------------- fingerprinting

def _resample(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Band-limited (FFT) resampling to SAMPLE_RATE; ingest already gives 16 kHz, this is for other callers."""
    n_out = int(round(len(pcm) * SAMPLE_RATE / rate))
    spec = np.fft.rfft(pcm.astype(np.float64))
    keep = min(len(spec), n_out // 2 + 1)
    out = np.zeros(n_out // 2 + 1, dtype=complex)
    out[:keep] = spec[:keep]
    return (np.fft.irfft(out, n_out) * (n_out / len(pcm))).astype(np.float32)


def _sliding_max(x: np.ndarray, half: int, axis: int) -> np.ndarray:
    """Max over a window of 2*half+1 along ``axis`` (edges padded with -inf), in O(n) whatever the
    window (van Herk / Gil-Werman: running maxima forward and backward within window-sized blocks)."""
    w = 2 * half + 1
    x = np.moveaxis(x, axis, 0)
    n = x.shape[0]
    blocks = -(-(n + w - 1) // w)
    pad = [(half, blocks * w - n - half)] + [(0, 0)] * (x.ndim - 1)
    p = np.pad(x, pad, constant_values=-np.inf).reshape(blocks, w, *x.shape[1:])
    forward = np.maximum.accumulate(p, axis=1).reshape(blocks * w, *x.shape[1:])
    backward = np.maximum.accumulate(p[:, ::-1], axis=1)[:, ::-1].reshape(blocks * w, *x.shape[1:])
    return np.moveaxis(np.maximum(backward[:n], forward[w - 1:w - 1 + n]), 0, axis)


def _spectrogram(pcm: np.ndarray) -> np.ndarray:
    """(frames, N_BINS) STFT magnitudes of the band, float32, scaled so a full-scale sine is ~1."""
    n_frames = 1 + (len(pcm) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(pcm, N_FFT)[::HOP][:n_frames]
    window = np.hanning(N_FFT + 2)[1:-1].astype(np.float32)
    window /= window.sum() / 2                   # |X| of a full-scale sine at a bin centre → 1
    out = np.empty((n_frames, N_BINS), np.float32)
    for s in range(0, n_frames, 1024):           # bounded memory for hour-long audio
        out[s:s + 1024] = np.abs(np.fft.rfft(frames[s:s + 1024] * window, axis=1)[:, LO_BIN:HI_BIN])
    return out


def _peaks(mag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(frame, bin) of the landmark peaks, sorted by frame then bin. All tests compare magnitudes
    of this recording with each other (plus an absolute floor far below any speech), so a gain
    change moves no peak."""
    neigh = _sliding_max(_sliding_max(mag, PEAK_DF, axis=1), PEAK_DT, axis=0)
    local = _sliding_max(neigh.max(axis=1), int(round(LOCAL_SECONDS / FRAME_SECONDS)), axis=0)
    floor = np.maximum(local * np.float32(10 ** (-PEAK_RANGE_DB / 20)), np.float32(10 ** (PEAK_FLOOR_DB / 20)))
    mask = (mag == neigh) & (mag >= floor[:, None])
    t, f = np.nonzero(mask)                      # row-major: sorted by t, then f
    return t.astype(np.int32), f.astype(np.int32)


def _landmarks(t: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair every anchor with its first FAN_OUT peaks in the target zone → (hashes, anchor times)."""
    n = t.size
    taken = np.zeros(n, np.int32)
    hashes, times = [], []
    for k in range(1, n):
        a = np.arange(n - k)
        dt = t[k:] - t[:-k]
        live = dt <= MAX_DT
        if not live.any():                       # peaks are time-sorted: no later target is in range
            break
        df = f[k:] - f[:-k]
        ok = live & (dt >= 1) & (np.abs(df) <= MAX_DF) & (taken[:-k] < FAN_OUT)
        a = a[ok]
        taken[a] += 1
        fq, dfq = f[a] // HASH_FQ, (f[a + k] // HASH_FQ) - (f[a] // HASH_FQ)
        hashes.append((fq.astype(np.uint32) << 12) | ((dfq + 32).astype(np.uint32) << 6)
                      | (dt[ok] // HASH_DTQ).astype(np.uint32))
        times.append(t[a])
    if not hashes:
        return np.zeros(0, np.uint32), np.zeros(0, np.int32)
    h, tt = np.concatenate(hashes), np.concatenate(times)
    order = np.lexsort((h, tt))
    return h[order], tt[order].astype(np.int32)


def fingerprint(pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Fingerprint:
    """The landmark fingerprint of mono PCM (float in [-1, 1]; 16 kHz expected, other rates are resampled).

    Audio shorter than MIN_SECONDS, silent or dither-level audio gives an empty fingerprint.
    """
    pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
    if sample_rate != SAMPLE_RATE and pcm.size:
        pcm = _resample(pcm, sample_rate)
    if pcm.size < MIN_SECONDS * SAMPLE_RATE or not np.isfinite(pcm).all():
        return Fingerprint.empty()
    return Fingerprint(*_landmarks(*_all_peaks(lambda a, b: pcm[a:b], len(pcm))))


def fingerprint_spans(load, n_samples: int) -> Fingerprint:
    """The same fingerprint as :func:`fingerprint`, of 16 kHz PCM read by span: ``load(a, b)``
    returns samples a..b as float32 (finite). Reads a minute (plus context) at a time, so memory
    does not grow with the recording's length."""
    if n_samples < MIN_SECONDS * SAMPLE_RATE:
        return Fingerprint.empty()
    return Fingerprint(*_landmarks(*_all_peaks(load, n_samples)))


def _all_peaks(load, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The peaks of the whole recording, computed CHUNK_FRAMES at a time with enough context on
    either side that every peak is the same as with the whole spectrogram at once (memory stays
    ~30 MB for any length). ``load(a, b)``: samples a..b."""
    n_frames = 1 + (n_samples - N_FFT) // HOP
    margin = PEAK_DT + int(round(LOCAL_SECONDS / FRAME_SECONDS))
    ts, fs = [], []
    for start in range(0, n_frames, CHUNK_FRAMES):
        stop = min(start + CHUNK_FRAMES, n_frames)
        lo, hi = max(start - margin, 0), min(stop + margin, n_frames)
        t, f = _peaks(_spectrogram(load(lo * HOP, (hi - 1) * HOP + N_FFT)))
        t += lo
        keep = (t >= start) & (t < stop)
        ts.append(t[keep])
        fs.append(f[keep])
    return np.concatenate(ts), np.concatenate(fs)


# --------------------------------------------------------------------------- matching

def _expand(query: np.ndarray, sorted_keys: np.ndarray, max_postings: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """All (query index, sorted_keys index) pairs with equal values."""
    lo = np.searchsorted(sorted_keys, query, "left")
    cnt = np.searchsorted(sorted_keys, query, "right") - lo
    if max_postings is not None:
        cnt[cnt > max_postings] = 0
    total = int(cnt.sum())
    qi = np.repeat(np.arange(query.size), cnt)
    starts = np.repeat(lo - (np.cumsum(cnt) - cnt), cnt)
    return qi, starts + np.arange(total)


def _match(a: Fingerprint, b: Fingerprint) -> tuple[int, int]:
    """(number of the smaller fingerprint's hashes matching at the best offset ±1 frame, that
    offset in frames as a.time - b.time)."""
    if len(a) == 0 or len(b) == 0:
        return 0, 0
    order = np.argsort(b.hashes, kind="stable")
    ia, ib = _expand(a.hashes, b.hashes[order])
    if ia.size == 0:
        return 0, 0
    diff = a.times[ia].astype(np.int64) - b.times[order][ib]
    lo = int(diff.min())
    counts = np.bincount(diff - lo)
    best = int(np.argmax(np.convolve(counts, np.ones(3, np.int64), mode="same")))   # index into counts
    near = np.abs(diff - lo - best) <= 1
    matched = np.unique((ia if len(a) <= len(b) else ib)[near]).size
    first = max(best - 1, 0)                     # the offset: the busiest single frame of the window
    return int(matched), lo + first + int(np.argmax(counts[first:best + 2]))


def similarity(a: Fingerprint, b: Fingerprint) -> tuple[float, float]:
    """(score in [0, 1], offset in seconds): the share of the smaller fingerprint's hashes that match
    the other's at one consistent time offset (±1 frame), and that offset as the time in ``a`` at
    which ``b`` starts (b = a with its first 2 s cut → +2.0; a = b with its first 2 s cut → -2.0).

    Empty or tiny fingerprints score 0: fewer than MIN_MATCHES aligned matches is no match, and the
    denominator is at least MIN_HASHES.
    """
    matched, offset = _match(a, b)
    if matched == 0 or matched < MIN_MATCHES:
        return 0.0, 0.0
    score = matched / max(min(len(a), len(b)), MIN_HASHES)
    return float(min(score, 1.0)), float(offset * FRAME_SECONDS)


_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def text_similarity(a: str, b: str) -> float:
    """How much of the shorter transcript the other one repeats: difflib.SequenceMatcher on
    case-folded word tokens (punctuation dropped); the words in matching runs of at least two words
    (one word where the shorter transcript has fewer than four), over the shorter transcript's
    word count. 1.0 for the same words, also when one transcript is a trimmed part of the other;
    runs of two or more words keep chance agreement of single common words ("the", "of") out, so
    unrelated utterances score ~0.05. No words on both sides → 1.0, on one side → 0.0."""
    wa, wb = _words(a), _words(b)
    if not wa and not wb:
        return 1.0
    if not wa or not wb:
        return 0.0
    shorter = min(len(wa), len(wb))
    min_run = 2 if shorter >= 4 else 1
    matcher = difflib.SequenceMatcher(None, wa, wb, autojunk=False)
    same = sum(block.size for block in matcher.get_matching_blocks() if block.size >= min_run)
    return same / shorter


def _as_fingerprint(value) -> Fingerprint:
    if isinstance(value, Fingerprint):
        return value
    if value is None or len(value) == 0:
        return Fingerprint.empty()
    return Fingerprint.from_bytes(bytes(value))


def _index_keys(fp: Fingerprint) -> tuple[np.ndarray, np.ndarray]:
    """Keys for the inverted index: every two landmarks of one anchor (same frame, same anchor
    frequency: adjacent in the (time, hash)-sorted fingerprint) combined into one 30-bit key
    (anchor frequency + both targets), with the anchor's frame. Measured over 351 pairs of
    unrelated recordings: 4.6% of one's 18-bit landmark hashes occur somewhere in the other, but
    only 0.07% of its keys, so posting lists stay short and the candidate search costs ~n·(1 +
    0.0007·n) postings instead of n² comparisons."""
    h, t = fp.hashes, fp.times
    fq, low = h >> 12, h & 0xFFF
    keys, times = [], []
    for k in range(1, h.size):
        same = (t[k:] == t[:-k]) & (fq[k:] == fq[:-k])
        if not same.any():                          # groups are contiguous runs: none is longer than k
            break
        keys.append((fq[:-k][same].astype(np.uint64) << 24) | (low[:-k][same].astype(np.uint64) << 12)
                    | low[k:][same].astype(np.uint64))
        times.append(t[:-k][same])
    if not keys:
        return np.zeros(0, np.uint64), np.zeros(0, np.int32)
    return np.concatenate(keys), np.concatenate(times)


def _candidates(fps: list[Fingerprint], threshold: float) -> set[tuple[int, int]]:
    """Pairs (i < j) worth a :func:`similarity` check, found through an inverted index (key →
    postings of (recording, anchor frame), one key-sorted array). Recordings query it in batches;
    per (recording, other recording, time offset ±1 frame) the query's anchors whose keys agree
    are counted (anchors, not keys: one coincidentally equal anchor gives all its keys at one
    offset).

    A pair is a candidate with at least CANDIDATE_MIN_ANCHORS agreeing anchors and at least
    CANDIDATE_SHARE · threshold of the smaller recording's anchors (measured on 392 true pairs:
    agreeing-anchor share >= 0.91 · score; 0.25 leaves a 3.6x margin, and at least 6 agreeing
    anchors even for a 3 s clip at 32 kbit/s). Unrelated recordings have 0-3 agreeing anchors at
    any offset (3: the same espeak-ng voice saying the same words), a duplicate tens to thousands.
    """
    index = [_index_keys(fp) for fp in fps]
    sizes = np.array([k.size for k, _ in index], np.int64)
    if (sizes > 0).sum() < 2:
        return set()
    anchors = np.array([np.unique(t).size for _, t in index], np.int64)
    all_k = np.concatenate([k for k, _ in index])
    all_r = np.repeat(np.arange(len(fps), dtype=np.int64), sizes)
    all_t = np.concatenate([t for _, t in index]).astype(np.int64)
    order = np.argsort(all_k, kind="stable")
    index_k, index_r, index_t = all_k[order], all_r[order], all_t[order]
    span = int(all_t.max()) + 2                           # offsets lie in (-span, span)
    width = 2 * span + 1
    ends = np.cumsum(sizes)
    out: set[tuple[int, int]] = set()
    first = 0
    while first < len(fps):                               # a batch of recordings: ~_BATCH_KEYS query keys
        last = int(np.searchsorted(ends, ends[first] - sizes[first] + _BATCH_KEYS, "right"))
        last = max(last, first + 1)
        lo, hi = ends[first] - sizes[first], ends[last - 1]
        q_order = np.argsort(all_k[lo:hi], kind="stable")  # sorted queries: searchsorted walks the index once
        q_k, q_r, q_t = all_k[lo:hi][q_order], all_r[lo:hi][q_order], all_t[lo:hi][q_order]
        qi, pi = _expand(q_k, index_k, _MAX_POSTINGS)
        later = index_r[pi] > q_r[qi]                     # each pair once, from its lower index
        qi, pi = qi[later], pi[later]
        # (query recording, other recording, offset) as one id; count distinct query anchors per id
        batch_first = first
        pair = (q_r[qi] - batch_first) * len(fps) + index_r[pi]
        pid = pair * width + (q_t[qi] - index_t[pi] + span)
        srt = np.lexsort((q_t[qi], pid))
        pid, qt = pid[srt], q_t[qi][srt]
        fresh = np.ones(pid.size, bool)
        fresh[1:] = (pid[1:] != pid[:-1]) | (qt[1:] != qt[:-1])
        ids, votes = np.unique(pid[fresh], return_counts=True)
        first = last
        if ids.size == 0:
            continue
        merged = votes.copy()                             # merge ±1 frame of jitter, as similarity does
        for step in (-1, 1):
            pos = np.minimum(np.searchsorted(ids, ids + step), ids.size - 1)
            merged += np.where(ids[pos] == ids + step, votes[pos], 0)
        pair = ids // width
        a, b = pair // len(fps) + batch_first, pair % len(fps)
        need = np.maximum(CANDIDATE_MIN_ANCHORS, CANDIDATE_SHARE * threshold * np.minimum(anchors[a], anchors[b]))
        hit = merged >= need
        out.update(zip(a[hit].tolist(), b[hit].tolist()))
    return out


def find_near_duplicates(items: list[dict], *, threshold: float = THRESHOLD,
                         text_threshold: float = TEXT_THRESHOLD) -> dict[str, tuple[str, float]]:
    """Near-duplicate recordings among ``items`` → ``{dropped_id: (kept_id, score)}``.

    ``items``: dicts with ``id``, ``uri``, ``duration``, ``fingerprint`` (bytes from
    :meth:`Fingerprint.to_bytes`, or a :class:`Fingerprint`; empty/None never matches) and
    optionally ``text`` (the recording's transcript). A pair is a near-duplicate when
    :func:`similarity` ≥ ``threshold`` and, if both texts are non-None, :func:`text_similarity` ≥
    ``text_threshold`` (missing texts: audio alone decides).

    Recordings are visited longest first (ties: smallest uri); each one not already dropped is
    kept and drops every not-yet-assigned recording it near-duplicates, so every dropped recording
    maps to a kept one it matches directly, and in a group of copies the longest is kept.
    """
    if len({it["id"] for it in items}) != len(items):
        raise ValueError("item ids must be unique")
    order = sorted(range(len(items)), key=lambda k: (-float(items[k]["duration"]), items[k]["uri"]))
    items = [items[k] for k in order]                     # index = keep priority
    fps = [_as_fingerprint(it.get("fingerprint")) for it in items]
    edges: dict[int, list[tuple[int, float]]] = {}
    for i, j in sorted(_candidates(fps, threshold)):
        score, _ = similarity(fps[i], fps[j])
        if score < threshold:
            continue
        ta, tb = items[i].get("text"), items[j].get("text")
        if ta is not None and tb is not None and _words(ta) and _words(tb) \
                and text_similarity(ta, tb) < text_threshold:
            continue
        edges.setdefault(i, []).append((j, score))
    dropped: dict[str, tuple[str, float]] = {}
    gone: set[int] = set()
    for i in range(len(items)):
        if i in gone:
            continue
        for j, score in edges.get(i, ()):
            if j not in gone:
                gone.add(j)
                dropped[items[j]["id"]] = (items[i]["id"], round(score, 4))
    return dropped
