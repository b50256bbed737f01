"""The corpus build, as a Ray job: a list of stages over typed recordings, then the release.

``BUILD``: the stages, in order (each a small class, free of Ray; :mod:`pipelines.runner` runs
them and keeps their work parts):

1. :class:`~pipelines.ingest.IngestStage` (Ray tasks; each file in a bounded child process): read
   each new file once, decode it chunk by chunk to a local spool, hash, probe and fingerprint it,
   or quarantine it; for a recording also Silero VAD (in windows) and packing into 2-30 s segments,
   whose samples are written once to the clips part (:mod:`pipelines.recording`).
2. :class:`~pipelines.ingest.DropExactDuplicates` (driver): same PCM hash, with a reason.
3. :class:`~pipelines.label.LabelStage` (Ray actors, one faster-whisper model each, GPU if
   present): a recording's clips streamed from the store, labelled a batch at a time.
4. :class:`~pipelines.ingest.DropNearDuplicates` (driver): fingerprints and transcripts.
5. :class:`~pipelines.decide.TrimStage`, :class:`~pipelines.decide.AssignSplits`,
   :class:`~pipelines.decide.FilterStage` (driver, label-only): pieces, splits, decisions.

Then the release: :class:`~pipelines.cut.CutStage` (Ray tasks, streamed in recording order, each
within ``ingest.read_timeout_s``) FLAC-encodes each recording's kept segments from its clips, and
the driver writes every segment through the :class:`~corpus.release.ReleaseWriter`: its manifest
row (:func:`corpus.schema.manifest_row`) and, if kept, its audio and sample JSON
(:func:`corpus.schema.sample_fields`). No source file is read after ingest: the clips part is the
one copy of a recording's speech.

Placement: ``resources.label_resources`` (e.g. ``{asr: 1}``) is asked for by every label actor and
``resources.cpu_resources`` by every ingest task and cut task, so on a cluster each stage runs
only on the nodes that declare those Ray resources (GPU nodes, CPU pool). Between stages, data
moves through Ray's object store and the store (S3): no shared filesystem.

Resumable: a work part is written atomically and is the partition's completion marker. A rerun
skips every file and recording whose parts exist; a build over the same sources plus new files
processes only the new ones. ``segment_key`` names the segmentation parameters and ``label_key``
the model, decode and segmentation parameters, so changing them re-segments or relabels.
"""
from __future__ import annotations

import io
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from corpus.release import ReleaseWriter, acquire_release, hours_by_domain_split
from corpus.schema import QUARANTINE, RECORDINGS, Recording, manifest_row, sample_fields, table_from_rows
from corpus.store import Store, open_store
from pipelines.config import BuildConfig
from pipelines.cut import CutStage
from pipelines.decide import AssignSplits, FilterStage, TrimStage
from pipelines.ingest import DropExactDuplicates, DropNearDuplicates, Ingest, IngestStage, listed
from pipelines.label import LabelStage
from pipelines.runner import RayExecutor, Runner, done_parts, ray_session, work_prefix
from pipelines.sources import list_sources
from pipelines.stages import Resources, Stage

log = logging.getLogger(__name__)


def clips_location(store: Store, config: BuildConfig) -> dict:
    """Where the build keeps its recordings' clips (``work/clips/<segment_key>``), for the stages
    that read or write them."""
    return {"store": store.uri, "prefix": work_prefix(f"clips/{config.segment_key()}"),
            "endpoint_url": config.endpoint_url}


def label_stage(store: Store, config: BuildConfig) -> LabelStage:
    res = config.resources
    model = config.model.model_dump()
    model["model"] = model.pop("name")
    if model["device"] == "auto":
        from pipelines.asr import cuda_available

        model["device"] = "cuda" if cuda_available() else "cpu"
    if not model["cpu_threads"]:
        model["cpu_threads"] = max(1, int(res.cpus_per_label_actor))
    gpus = res.gpus_per_label_actor if model["device"] == "cuda" else 0
    return LabelStage(model, clips_location(store, config), config.label_key(),
                      Resources(cpus=res.cpus_per_label_actor, gpus=gpus, custom=dict(res.label_resources),
                                workers=res.label_actors, actors=True))


def build_stages(store: Store, config: BuildConfig, files) -> list[Stage]:
    """The build's stages, in order, for these listed files."""
    clips = clips_location(store, config)
    ingest = Ingest(endpoint_url=config.endpoint_url, segment=config.segment.model_dump(),
                    clips_store=clips["store"], clips_prefix=clips["prefix"], **config.ingest.model_dump())
    patterns = {(f.source_uri, f.domain): s.group_pattern for f in files
                for s in config.sources if s.domain == f.domain}
    return [IngestStage(ingest, workers=config.resources.decode_workers, placement=config.resources.cpu_resources,
                        clips_done=done_parts(store, clips["prefix"])),
            DropExactDuplicates(),
            label_stage(store, config),
            DropNearDuplicates(),
            TrimStage(config.filter),
            AssignSplits(config.splits, patterns, _fixed_splits(files, config)),
            FilterStage(config.filter)]


def _check_deferred(recs: list[Recording], config: BuildConfig) -> None:
    deferred = [r for r in recs if r.status == "deferred"]
    if deferred:
        log.warning("%d files could not be read and are deferred to the next run: %s", len(deferred),
                    "; ".join(f"{r.uri} ({r.reason})" for r in deferred[:5]))
        if config.ingest.on_read_error == "fail":
            raise RuntimeError(f"{len(deferred)} files could not be read (ingest.on_read_error=fail), nothing "
                               "committed; rerun to retry them: " + "; ".join(f"{r.uri}: {r.detail}"
                                                                             for r in deferred[:10]))


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


def _table_bytes(rows: list[dict], schema) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table_from_rows(rows, schema), buf, compression="zstd")
    return buf.getvalue()


def _write_release(runner: Runner, recordings: list[Recording], quarantine: list[Recording], store: Store,
                   config: BuildConfig, summary: dict, lease) -> dict:
    """Every segment into the release, kept ones with their audio cut now; then the commit."""
    cut = CutStage(clips_location(store, config), placement=config.resources.cpu_resources)
    writer = ReleaseWriter(store, config.release, config=config.resolved(), max_shard_bytes=config.shards.max_bytes,
                           max_shard_samples=config.shards.max_samples, lease=lease)
    with writer:
        for rec in runner.stream(cut, sorted(recordings, key=lambda r: r.recording_id),
                                 timeout=config.ingest.read_timeout_s):
            for seg in sorted(rec.segments, key=lambda s: s.segment_id):
                if seg.kept:
                    writer.add(manifest_row(seg, rec), flac=seg.flac, extra=sample_fields(seg, rec))
                else:
                    writer.add(manifest_row(seg, rec))
        files = {"quarantine.parquet": _table_bytes([q.file_row() for q in quarantine], QUARANTINE),
                 "recordings.parquet": _table_bytes([r.file_row() for r in recordings], RECORDINGS),
                 "build_summary.json": json.dumps(summary, indent=2, sort_keys=True).encode()}
        return writer.commit(extra_files=files)


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
    with acquire_release(store, config.release, what="build release") as lease, \
            ray_session(config.ray_address, num_cpus=config.resources.num_cpus,
                        resources=config.resources.local_resources()) as ray:
        stats.stage_seconds["ray_start"] = round(time.perf_counter() - t, 3)
        runner = Runner(RayExecutor(ray), store, progress=progress)
        recs = [listed(f) for f in files]
        for stage in build_stages(store, config, files):
            t = time.perf_counter()
            recs = runner.apply(stage, recs)
            stats.stage_seconds[stage.name] = round(time.perf_counter() - t, 3)
            if isinstance(stage, IngestStage):
                _check_deferred(recs, config)
                stats.ingested_now = runner.ran[stage.name]
            elif isinstance(stage, LabelStage):
                stats.recordings_labelled_now = runner.ran[stage.name]
                stats.audio_seconds_labelled_now = runner.ran_weight.get(stage.name, 0.0)
                stats.segments_labelled_now = sum(len(recs[i].segments) for i in runner.made_now[stage.name])
                stats.label_seconds = stats.stage_seconds[stage.name] if stats.recordings_labelled_now else 0.0
        recordings = [r for r in recs if r.ok]
        # the release's quarantine table: what ingest ruled out (uri order), then the near-duplicates
        quarantine = ([r for r in recs if not r.ok and r.reason != "near_duplicate"]
                      + [r for r in recs if r.reason == "near_duplicate"])
        stats.recordings = len(recordings)
        rows = [manifest_row(seg, rec) for rec in recordings for seg in rec.segments]
        summary = make_summary(files, recordings, quarantine, rows, stats)
        t = time.perf_counter()
        info = _write_release(runner, recordings, quarantine, store, config, summary, lease)
        stats.stage_seconds["cut+commit"] = round(time.perf_counter() - t, 3)
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
            "quarantined": sum(q.domain == d and q.status != "deferred" for q in quarantine),
            "hours_in": round(sum(r.duration for r in recordings if r.domain == d) / 3600, 6),
            "segments": sum(r["domain"] == d for r in rows),
            "kept": len(kept),
            "hours_kept": round(sum(r["end"] - r["start"] for r in kept) / 3600, 6),
        }
    rejects = Counter(reason for r in rows for reason in r["reasons"])
    return {
        "domains": per_domain,
        "rejects_by_reason": dict(sorted(rejects.items())),
        "rejected_segments": sum(r["decision"] == "reject" for r in rows),
        "quarantine_by_reason": dict(sorted(Counter(q.reason for q in quarantine if q.status != "deferred").items())),
        "deferred_by_reason": dict(sorted(Counter(q.reason for q in quarantine if q.status == "deferred").items())),
        "hours_kept_by_domain_split": hours_by_domain_split([r for r in rows if r["decision"] == "keep"]),
        "files": stats.files, "ignored_files": stats.ignored_files, "ingested_now": stats.ingested_now,
        "recordings": stats.recordings, "recordings_labelled_now": stats.recordings_labelled_now,
        "segments_labelled_now": stats.segments_labelled_now,
        "label_throughput_audio_s_per_s": round(stats.audio_seconds_labelled_now / stats.label_seconds, 3)
        if stats.label_seconds else None,
        "stage_seconds": stats.stage_seconds,
        "wall_seconds": round(stats.wall_seconds, 3),
    }
