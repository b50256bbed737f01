"""The corpus build, as a Ray job: raw audio → ingest (decode once, VAD, clips) → label → filter → shards → release.

Stages and where they run:

1. **ingest** (Ray Data ``map``, tasks; each file in a bounded child process): read each new file
   once, decode it chunk by chunk to a local spool, hash, probe and fingerprint it, or quarantine
   it; for a recording also Silero VAD (in windows) and packing into 2-30 s segments, whose
   samples are written once to ``work/clips/<segment_key>/<recording_id>.parquet``
   (:mod:`pipelines.recording`). One row per file into ``work/ingest/<file_key>.parquet``. The
   driver then drops exact duplicates (same PCM hash) with a reason.
2. **label** (Ray Data actor pool, one faster-whisper model per actor, GPU if present): each
   actor reads a recording's clips part from the store and decodes its segments in batches;
   one part per recording into ``work/labels/<label_key>/<recording_id>.parquet``. Only a few
   small fields of each recording travel to the actor (no fingerprint, no audio).
3. **filter** (driver, pure rules) and split assignment by recording.
4. **shard** (Ray tasks read a recording's clips part and FLAC-encode its kept segments; the
   driver writes them in segment-id order through the release writer) and commit.

No source file is read after ingest: the clips part is the one copy of a recording's speech.

Placement: ``resources.label_resources`` (e.g. ``{asr: 1}``) is asked for by every label actor and
``resources.cpu_resources`` by every ingest task and cut task, so on a cluster each stage runs
only on the nodes that declare those Ray resources (GPU nodes, CPU pool). Between stages, data
moves through Ray's object store and the store (S3): no shared filesystem. The clips are exact
int16 samples (the decoded PCM is int16 / 32768), FLAC-compressed.

Resumable: a work part is written atomically and is the partition's completion marker (a
separate ``_SUCCESS`` object would add nothing to an atomic write). A rerun skips every file and
recording whose parts exist; a build over the same sources plus new files processes only the
new ones. ``segment_key`` names the segmentation parameters and ``label_key`` the model, decode
and segmentation parameters, so changing them re-segments or relabels.
"""
from __future__ import annotations

import io
import itertools
import json
import logging
import os
import re
import signal
import time
from collections import Counter, defaultdict
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from corpus.release import ReleaseWriter, acquire_release, hours_by_domain_split
from corpus.schema import SAMPLE_RATE, segment_id
from corpus.shards import encode_flac
from corpus.splits import assign_split
from corpus.store import Store, open_store
from pipelines.config import BuildConfig
from pipelines.filter import decide
from pipelines.ingest import Ingest, drop_exact_duplicates, drop_near_duplicates, with_source_metadata
from pipelines.trim import pieces as _pieces
from pipelines.sources import list_sources

log = logging.getLogger(__name__)

INGEST_DIR = "work/ingest"
CLIPS_DIR = "work/clips"
# label fields that go into each kept sample's JSON beside the manifest's (re-filters use the same)
LABEL_EXTRA_FIELDS = ("language", "language_probability", "temperature", "words", "model_id", "decode_params",
                      "pass_used", "first_pass", "second_pass", "language_probs", "decode_language",
                      "phrase_languages", "agreement_text")
LABELS_DIR = "work/labels"
# batches of one recording labelled per call. faster-whisper's batched call holds every clip's
# features and decoder state until it returns (measured: about 7 MB per clip with tiny.en on the
# CPU), so one batch per call keeps a label actor's peak flat whatever the recording's speech:
# 30 min of dense speech peaked at 1,179 MB with 1 batch per call, 1,603 MB with 8 (same labels)
LABEL_CHUNK_BATCHES = 1


# --------------------------------------------------------------------------- work parts


def _write_part(store: Store, key: str, rows: list[dict]) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, compression="zstd")
    store.put_bytes(key, buf.getvalue())


def _read_part(store: Store, key: str) -> list[dict]:
    return pq.read_table(io.BytesIO(store.get_bytes(key))).to_pylist()


def _done_keys(store: Store, prefix: str) -> set[str]:
    return {k.rsplit("/", 1)[-1].removesuffix(".parquet") for k in store.list(prefix) if k.endswith(".parquet")}


# --------------------------------------------------------------------------- Ray stages


# what of a recording row the label actors get: no fingerprint, no audio
LABEL_ROW_FIELDS = ("recording_id", "language", "duration")


class LabelStage:
    """Ray Data actor: holds one faster-whisper model; labels every segment of a recording,
    reading the recording's clips (written once at ingest) from the store."""

    def __init__(self, model: dict, clips: dict):
        from pipelines.asr import WhisperLabeler

        self.labeler = WhisperLabeler(**model)
        self.clips = clips  # {"store": uri, "prefix": work/clips/<segment_key>, "endpoint_url": ...}
        self.store = open_store(clips["store"], endpoint_url=clips.get("endpoint_url"))

    def __call__(self, row: dict) -> dict:
        from pipelines.recording import clip_to_float, iter_clips

        # a recording's clips are labelled a chunk at a time (a whole number of batches, so every
        # batch holds the same clips as in one call): the actor's memory follows the chunk, not
        # the recording's hours of speech
        chunk = max(1, self.labeler.batch_size) * LABEL_CHUNK_BATCHES
        out: list[dict] = []
        stored = iter_clips(self.store, f"{self.clips['prefix']}/{row['recording_id']}.parquet")
        while piece := list(itertools.islice(stored, chunk)):
            out += self._label_chunk([(start, end) for start, end, _ in piece],
                                     [clip_to_float(pcm) for _, _, pcm in piece], row.get("language"))
        return {**row, "labels": json.dumps(out)}

    def _label_chunk(self, segments: list[tuple[float, float]], audio: list[np.ndarray],
                     language: str | None) -> list[dict]:
        pcm = np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32)
        # the clips were concatenated in order: give the labeler their positions in that array
        clips, offset = [], 0
        for clip in audio:
            clips.append((offset / SAMPLE_RATE, (offset + len(clip)) / SAMPLE_RATE))
            offset += len(clip)
        labels = self.labeler.label(pcm, clips, language=language)
        out = []
        for (start, end), (c_start, _), label in zip(segments, clips, labels):
            shift = start - c_start
            words = [{**w, "start": round(w["start"] + shift, 3), "end": round(w["end"] + shift, 3)}
                     for w in label.pop("words")]
            out.append({"start": start, "end": end, **label, "words": words})
        return out


def _cut_and_encode(clips: dict, recording_id: str, segments: list[tuple[str, float, float]]) -> list[bytes]:
    """Ray task: read one recording's clips part and FLAC-encode the given (segment_id, start, end)
    segments as the release stores them (16-bit, the project's float → int16 quantisation)."""
    from pipelines.recording import clip_to_float, cut_clips, iter_clips

    store = open_store(clips["store"], endpoint_url=clips.get("endpoint_url"))
    stored = cut_clips(iter_clips(store, f"{clips['prefix']}/{recording_id}.parquet"),
                       [(start, end) for _, start, end in segments])
    out = []
    for sid, start, end in segments:
        if (start, end) not in stored:
            raise RuntimeError(f"segment {sid} is not in the clips of recording {recording_id}")
        out.append(encode_flac(clip_to_float(stored[(start, end)])))
    return out


def _clips(store: Store, config: BuildConfig) -> dict:
    return {"store": store.uri, "prefix": f"{CLIPS_DIR}/{config.segment_key()}", "endpoint_url": config.endpoint_url}


# --------------------------------------------------------------------------- the build


@dataclass
class BuildStats:
    files: int = 0
    ignored_files: int = 0
    ingested_now: int = 0
    recordings: int = 0
    recordings_labelled_now: int = 0
    segments_labelled_now: int = 0
    label_seconds: float = 0.0
    audio_seconds_labelled_now: float = 0.0
    wall_seconds: float = 0.0
    stage_seconds: dict = field(default_factory=dict)


@contextmanager
def ray_session(config: BuildConfig):
    """``ray.init()`` a local cluster (or join ``ray_address``); SIGTERM shuts it down cleanly.

    A local cluster is a new one (``address="local"``: never a cluster someone else started on this
    machine) and listens on 127.0.0.1 only (see :func:`pipelines.ray_local.loopback_only`)."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine unless asked
    address = config.ray_address or os.environ.get("RAY_ADDRESS")
    with ExitStack() as scope:
        if not address:
            from pipelines.ray_local import loopback_only

            scope.enter_context(loopback_only())
        import ray

        started = not ray.is_initialized()
        if started and address:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        elif started:
            from pipelines.ray_local import init_local

            init_local(ray, num_cpus=config.resources.num_cpus, _node_ip_address="127.0.0.1",
                       resources=config.resources.local_resources() or None, include_dashboard=False,
                       logging_level=logging.WARNING)
        for name in ("ray.data", "ray.data._internal"):
            logging.getLogger(name).setLevel(logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_progress = False
        previous = signal.getsignal(signal.SIGTERM)

        def _terminate(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, _terminate)
        try:
            yield ray
        finally:
            signal.signal(signal.SIGTERM, previous)
            if started:
                ray.shutdown()


def _placement(resources: dict[str, float]) -> dict:
    """Ray options that keep a stage on the nodes declaring these custom resources (none: anywhere)."""
    return {"resources": dict(resources)} if resources else {}


def _needs_fingerprint(row: dict) -> bool:
    return row.get("status") == "ok" and not row.get("fingerprint")


def _ingest(ray, files, store: Store, config: BuildConfig, stats: BuildStats, progress: bool) -> list[dict]:
    done = _done_keys(store, INGEST_DIR)
    clips = _clips(store, config)
    have_clips = _done_keys(store, clips["prefix"])
    # a cached row keeps what was read from the file; what the sources declare (licence…) is current
    rows = {f.file_key: with_source_metadata(_read_part(store, f"{INGEST_DIR}/{f.file_key}.parquet")[0], f.to_dict())
            for f in files if f.file_key in done}
    # a recording ingested before fingerprints existed is ingested again, so that it is compared too;
    # one whose clips for this segmentation are missing (new segment parameters, older work) too
    todo = [f.to_dict() for f in files if f.file_key not in rows or _needs_fingerprint(rows[f.file_key])
            or (rows[f.file_key]["status"] == "ok" and rows[f.file_key]["recording_id"] not in have_clips)]
    stats.ingested_now = len(todo)
    if todo:
        stage = Ingest(endpoint_url=config.endpoint_url, segment=config.segment.model_dump(),
                       clips_store=clips["store"], clips_prefix=clips["prefix"], **config.ingest.model_dump())
        ds = ray.data.from_items(todo, override_num_blocks=min(len(todo), 64))
        ds = ds.map(stage, compute=ray.data.TaskPoolStrategy(size=config.resources.decode_workers), num_cpus=1,
                    **_placement(config.resources.cpu_resources))
        with tqdm(total=len(todo), desc="ingest", unit="file", disable=not progress) as bar:
            for row in ds.iter_rows():
                if row["status"] == "deferred":  # not cached: the next run reads the file again
                    rows[row["file_key"]] = dict(row)
                else:
                    _write_part(store, f"{INGEST_DIR}/{row['file_key']}.parquet", [row])
                    rows[row["file_key"]] = _read_part(store, f"{INGEST_DIR}/{row['file_key']}.parquet")[0]
                bar.update()
    deferred = [rows[f.file_key] for f in files if rows[f.file_key]["status"] == "deferred"]
    if deferred:
        log.warning("%d files could not be read and are deferred to the next run: %s", len(deferred),
                    "; ".join(f"{r['uri']} ({r['reason']})" for r in deferred[:5]))
        if config.ingest.on_read_error == "fail":
            raise RuntimeError(f"{len(deferred)} files could not be read (ingest.on_read_error=fail), nothing "
                               "committed; rerun to retry them: " + "; ".join(f"{r['uri']}: {r['detail']}"
                                                                             for r in deferred[:10]))
    return [rows[f.file_key] for f in files]


def _label(ray, recordings: list[dict], store: Store, config: BuildConfig, stats: BuildStats,
           progress: bool) -> dict[str, list[dict]]:
    labels_dir = f"{LABELS_DIR}/{config.label_key()}"
    done = _done_keys(store, labels_dir)
    todo = [r for r in recordings if r["recording_id"] not in done]
    stats.recordings_labelled_now = len(todo)
    if todo:
        res = config.resources
        model = config.model.model_dump()
        model["model"] = model.pop("name")
        if model["device"] == "auto":
            from pipelines.asr import cuda_available

            model["device"] = "cuda" if cuda_available() else "cpu"
        gpus = res.gpus_per_label_actor if model["device"] == "cuda" else 0
        if not model["cpu_threads"]:
            model["cpu_threads"] = max(1, int(res.cpus_per_label_actor))
        items = [{k: r.get(k) for k in LABEL_ROW_FIELDS} for r in todo]
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 256))
        ds = ds.map(LabelStage, fn_constructor_kwargs={"model": model, "clips": _clips(store, config)},
                    compute=ray.data.ActorPoolStrategy(size=res.label_actors),
                    num_cpus=res.cpus_per_label_actor, num_gpus=gpus, **_placement(res.label_resources))
        start = time.perf_counter()
        seconds = sum(r["duration"] for r in todo)
        with tqdm(total=round(seconds), desc="label", unit="audio-s", disable=not progress) as bar:
            for row in ds.iter_rows():
                rec = row["recording_id"]
                segs = json.loads(row["labels"])
                rows = [{"segment_id": segment_id(rec, s["start"], s["end"]), "recording_id": rec, **s} for s in segs]
                _write_part(store, f"{labels_dir}/{rec}.parquet", rows or [{"segment_id": None, "recording_id": rec}])
                stats.segments_labelled_now += len(rows)
                stats.audio_seconds_labelled_now += row["duration"]
                bar.update(round(row["duration"]))
        stats.label_seconds = time.perf_counter() - start
    out = {}
    for r in recordings:
        rows = _read_part(store, f"{labels_dir}/{r['recording_id']}.parquet")
        out[r["recording_id"]] = [x for x in rows if x.get("segment_id")]
    return out


def _fixed_splits(files, config: BuildConfig) -> dict[tuple[str, str], str | None]:
    """(source uri, domain) -> the split a source declares for all its recordings (``Source.split``)."""
    out = {}
    for source in config.sources:
        if source.split is None:
            continue
        uri = open_store(source.uri, endpoint_url=config.endpoint_url).uri
        for f in files:
            if f.source_uri == uri and f.domain == source.domain:
                out[(f.source_uri, f.domain)] = source.split
    return out


def split_group(rec: dict, patterns: dict[tuple[str, str], str | None]) -> str:
    """What a recording's split is assigned by: its source's declared group, else the recording."""
    pattern = patterns.get((rec["source_uri"], rec["domain"]))
    if pattern:
        match = re.search(pattern, rec["key"])
        if match and match.group("group"):
            return f"{rec['source_uri']}#{match.group('group')}"
    return rec["recording_id"]


def _manifest_rows(recordings: list[dict], labels: dict[str, list[dict]], config: BuildConfig,
                   patterns: dict[tuple[str, str], str | None],
                   fixed: dict[tuple[str, str], str | None] | None = None) -> list[dict]:
    rows = []
    for rec in recordings:
        group = split_group(rec, patterns)
        split = (fixed or {}).get((rec["source_uri"], rec["domain"])) or assign_split(group, config.splits)
        for lab in (piece for whole in labels[rec["recording_id"]]
                    for piece in trim_pieces(whole, config.filter, rec.get("language"))):
            probs = [w["probability"] for w in (lab.get("words") or [])]
            row = {"segment_id": lab["segment_id"], "recording_id": rec["recording_id"], "source_uri": rec["uri"],
                   "domain": rec["domain"], "split": split, "start": lab["start"], "end": lab["end"],
                   "text": lab["text"], "avg_logprob": lab["avg_logprob"], "no_speech_prob": lab["no_speech_prob"],
                   "compression_ratio": lab["compression_ratio"], "language": lab.get("language"),
                   "language_probability": lab.get("language_probability"), "declared_language": rec.get("language"),
                   "mean_word_prob": round(sum(probs) / len(probs), 4) if probs else None,
                   "pass_used": lab.get("pass_used") or 1, "group": group,
                   "parent_segment_id": lab.get("parent_segment_id"), "rms_dbfs": lab.get("rms_dbfs"),
                   "agreement_cer": lab.get("agreement_cer"), "trim_reason": lab.get("trim_reason")}
            row["decision"], row["reasons"] = decide(row, config.filter)
            del row["trim_reason"]
            rows.append({**row, "_label": lab})
    return rows


def trim_pieces(label: dict, t, declared: str | None) -> list[dict]:
    """A label, or its trimmed pieces with ids from the recording and their times (pipelines.trim)."""
    got = _pieces(label, t, declared)
    if len(got) == 1 and got[0]["start"] == label["start"] and got[0]["end"] == label["end"]:
        return got
    rec = label["recording_id"]
    return [{**p, "segment_id": segment_id(rec, p["start"], p["end"]), "parent_segment_id": label["segment_id"]}
            for p in got]


def _shard_and_commit(ray, recordings, rows, quarantine, store, config, summary, progress, lease=None) -> dict:
    by_rec: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_rec[row["recording_id"]].append(row)
    recs = {r["recording_id"]: r for r in recordings}
    order = sorted(by_rec)
    cut = ray.remote(num_cpus=1, **_placement(config.resources.cpu_resources))(_cut_and_encode)
    clips = _clips(store, config)
    window = max(2, int(ray.cluster_resources().get("CPU", 2)) * 2)
    pending: dict[str, object] = {}

    def submit(i):
        if i < len(order):
            rid = order[i]
            kept = [(r["segment_id"], r["start"], r["end"]) for r in sorted(by_rec[rid], key=lambda r: r["segment_id"])
                    if r["decision"] == "keep"]
            pending[rid] = cut.remote(clips, rid, kept) if kept else None

    writer = ReleaseWriter(store, config.release, config=config.resolved(), max_shard_bytes=config.shards.max_bytes,
                           max_shard_samples=config.shards.max_samples, lease=lease)
    with writer, tqdm(total=len(order), desc="shard", unit="rec", disable=not progress) as bar:
        for i in range(min(window, len(order))):
            submit(i)
        for i, rid in enumerate(order):
            ref = pending.pop(rid)
            flacs = iter(_bounded_get(ray, ref, config.ingest.read_timeout_s, rid)) if ref is not None else iter(())
            submit(i + window)
            for row in sorted(by_rec[rid], key=lambda r: r["segment_id"]):
                label = row.pop("_label")
                extra = {k: label.get(k) for k in LABEL_EXTRA_FIELDS}
                extra.update(licence=recs[rid]["licence"])
                if row["decision"] == "keep":
                    writer.add(row, flac=next(flacs), extra=extra)
                else:
                    writer.add(row)
            bar.update()
        tables = {"quarantine.parquet": [_without_fingerprint(q) for q in quarantine],
                  "recordings.parquet": [_without_fingerprint(r) for r in recordings]}
        files = {name: _table_bytes(data) for name, data in tables.items()}
        files["build_summary.json"] = json.dumps(summary, indent=2, sort_keys=True).encode()
        return writer.commit(extra_files=files)


def _bounded_get(ray, ref, timeout: float, recording_id: str):
    """A cut task's result within ``timeout`` seconds, else the task is cancelled and the build
    fails (nothing is committed; the rerun resumes from the work parts)."""
    from ray.exceptions import GetTimeoutError

    try:
        return ray.get(ref, timeout=timeout)
    except GetTimeoutError:
        ray.cancel(ref, force=True)
        raise TimeoutError(f"cutting recording {recording_id}: no result within {timeout:g} s (ingest.read_timeout_s);"
                           " nothing committed, rerun to resume") from None


def _without_fingerprint(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "fingerprint"}


def _table_bytes(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows) if rows else pa.table({"uri": pa.array([], pa.string())}), buf,
                   compression="zstd")
    return buf.getvalue()


def run_build(config: BuildConfig, *, progress: bool = True) -> dict:
    """Run the whole build; returns the summary (also saved as the release's build_summary.json)."""
    t0 = time.perf_counter()
    stats = BuildStats()
    store = open_store(config.store, endpoint_url=config.endpoint_url)
    files, ignored = list_sources(config.sources, endpoint_url=config.endpoint_url)
    stats.stage_seconds["list"] = round(time.perf_counter() - t0, 3)
    stats.files, stats.ignored_files = len(files), len(ignored)
    for uri in ignored:
        log.info("ignoring %s: not an audio file extension", uri)
    if not files:
        raise ValueError(f"no audio files under the sources: {[s.uri for s in config.sources]}")
    # one writer per release: a second build of the same name fails here, before any work
    t = time.perf_counter()
    with acquire_release(store, config.release, what="build release") as lease, ray_session(config) as ray:
        stats.stage_seconds["ray_start"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        ingested = drop_exact_duplicates(_ingest(ray, files, store, config, stats, progress))
        stats.stage_seconds["ingest"] = round(time.perf_counter() - t, 3)
        recordings = [r for r in ingested if r["status"] == "ok"]
        quarantine = [r for r in ingested if r["status"] != "ok"]
        stats.recordings = len(recordings)
        t = time.perf_counter()
        labels = _label(ray, recordings, store, config, stats, progress)
        stats.stage_seconds["label"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        texts = {rid: " ".join(seg["text"] or "" for seg in segs) for rid, segs in labels.items()}
        recordings, near = drop_near_duplicates(recordings, texts)
        quarantine += near
        stats.recordings = len(recordings)
        patterns = {(f.source_uri, f.domain): s.group_pattern for f in files
                    for s in config.sources if s.domain == f.domain}
        rows = _manifest_rows(recordings, labels, config, patterns, _fixed_splits(files, config))
        stats.stage_seconds["dedupe+filter"] = round(time.perf_counter() - t, 3)
        summary = make_summary(files, recordings, quarantine, rows, stats)
        t = time.perf_counter()
        info = _shard_and_commit(ray, recordings, rows, quarantine, store, config, summary, progress, lease)
        stats.stage_seconds["shard+commit"] = round(time.perf_counter() - t, 3)
    stats.wall_seconds = time.perf_counter() - t0
    summary = make_summary(files, recordings, quarantine, rows, stats)
    summary["release"] = {"name": info["name"], "store": store.uri, "counts": info["counts"]}
    return summary


def make_summary(files, recordings, quarantine, rows, stats: BuildStats) -> dict:
    domains = sorted({f.domain for f in files})
    per_domain = {}
    for d in domains:
        kept = [r for r in rows if r["domain"] == d and r["decision"] == "keep"]
        per_domain[d] = {
            "files": sum(f.domain == d for f in files),
            "quarantined": sum(q["domain"] == d and q["status"] != "deferred" for q in quarantine),
            "hours_in": round(sum(r["duration"] for r in recordings if r["domain"] == d) / 3600, 6),
            "segments": sum(r["domain"] == d for r in rows),
            "kept": len(kept),
            "hours_kept": round(sum(r["end"] - r["start"] for r in kept) / 3600, 6),
        }
    rejects = Counter(reason for r in rows for reason in r["reasons"])
    return {
        "domains": per_domain,
        "rejects_by_reason": dict(sorted(rejects.items())),
        "rejected_segments": sum(r["decision"] == "reject" for r in rows),
        "quarantine_by_reason": dict(sorted(Counter(q["reason"] for q in quarantine
                                                    if q["status"] != "deferred").items())),
        "deferred_by_reason": dict(sorted(Counter(q["reason"] for q in quarantine if q["status"] == "deferred").items())),
        "hours_kept_by_domain_split": hours_by_domain_split([r for r in rows if r["decision"] == "keep"]),
        "files": stats.files, "ignored_files": stats.ignored_files, "ingested_now": stats.ingested_now,
        "recordings": stats.recordings, "recordings_labelled_now": stats.recordings_labelled_now,
        "segments_labelled_now": stats.segments_labelled_now,
        "label_throughput_audio_s_per_s": round(stats.audio_seconds_labelled_now / stats.label_seconds, 3)
        if stats.label_seconds else None,
        "stage_seconds": stats.stage_seconds,
        "wall_seconds": round(stats.wall_seconds, 3),
    }
