"""Re-filter a release: new thresholds → a new release, from the manifest alone, without ASR.

A re-filter is the build's own stages over the source release's recordings (made from its
manifest, run in this process by :class:`pipelines.runner.LocalExecutor`):
:class:`~pipelines.decide.FilterStage` decides every segment again with the new thresholds
(optionally per domain); a segment kept before keeps its audio and sample JSON, copied byte for
byte from the source release's shards; a segment kept now but rejected before has no audio in any
shard, so :class:`~pipelines.cut.CutStage` takes it from the build's clips of its recording (read
once at ingest; the source is decoded again, bounded, only when those are gone), and its label
details from the build's stored labels (:class:`~pipelines.label.LabelStage`'s work part, reused,
never computed, trimmed again by :class:`~pipelines.decide.TrimStage` with the release's settings).
Nothing here imports the ASR adapter. Segment ids, splits and texts are those of the source
release; a trimmed piece cut out at build time stays cut out.
"""
from __future__ import annotations

import io
import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import replace

import pyarrow.parquet as pq
from tqdm import tqdm

from corpus.release import Release, ReleaseError, ReleaseWriter
from corpus.schema import Label, Recording, Segment, manifest_row, sample_fields
from corpus.shards import iter_shard_raw
from corpus.store import ObjectNotFound, Store
from pipelines.config import BuildConfig, FilterConfig
from pipelines.cut import CutStage
from pipelines.decide import FilterStage, TrimStage
from pipelines.label import LabelStage
from pipelines.rules import RULES, TrimmedOut
from pipelines.runner import LocalExecutor, Runner
from pipelines.stages import Resources

log = logging.getLogger(__name__)

# the reasons of a piece trimming cut out (pipelines.rules' TrimmedOut rules)
TRIM_REASONS = tuple(dict.fromkeys(rule.code for rule in RULES if isinstance(rule, TrimmedOut)))
CARRIED_FILES = ("quarantine.parquet", "recordings.parquet")


def resolve_thresholds(base: dict, overrides: dict | None, domain_overrides: dict | None,
                       domains: set[str]) -> tuple[FilterConfig, dict[str, FilterConfig]]:
    """The new thresholds, validated; an override for a domain the release lacks is an error."""
    from pydantic import ValidationError

    unknown = sorted(set(domain_overrides or {}) - domains)
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown} in per-domain thresholds; the release has {sorted(domains)}")
    try:
        default = FilterConfig(**{**FilterConfig.of_release(base).model_dump(), **(overrides or {})})
        per_domain = {d: FilterConfig(**{**default.model_dump(), **o}) for d, o in (domain_overrides or {}).items()}
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ValueError(f"invalid thresholds: {problems}") from None
    return default, per_domain


def _built_config(old: Release) -> dict:
    """The config a release was built with; a release no build made cannot be re-filtered."""
    config = old.config()
    if not isinstance(config, dict) or "filter" not in config or "sources" not in config:
        raise ReleaseError(f"release {old.name!r} was not made by `stt-corpus build` (its config has no filter); "
                           "only built releases can be re-filtered")
    return config


def check_request(store: Store, source: str, thresholds: dict | None, domain_thresholds: dict | None) -> None:
    """Raise, naming the problem, unless ``source`` is a built release these thresholds can re-filter."""
    old = Release.open(store, source)
    resolve_thresholds(_built_config(old)["filter"], thresholds, domain_thresholds,
                       set(old.manifest().column("domain").to_pylist()))


def _build_config(config: dict) -> BuildConfig | None:
    try:
        return BuildConfig(**{k: v for k, v in config.items() if k in BuildConfig.model_fields})
    except ValueError:
        return None


def recordings_of(release: Release, manifest: list[dict]) -> list[Recording]:
    """The release's recordings with their segments as its manifest has them (labels without words)."""
    files = _recording_rows(release)
    by_recording: dict[str, list[dict]] = defaultdict(list)
    for row in manifest:
        by_recording[row["recording_id"]].append(row)
    out = []
    for rid, rows in sorted(by_recording.items()):
        first = rows[0]
        file = files.get(rid) or {"file_key": rid, "source_uri": first["source_uri"], "key": "", "uri": first["source_uri"],
                                  "domain": first["domain"], "licence": "unknown", "status": "ok", "recording_id": rid}
        rec = replace(Recording.from_row(file), uri=first["source_uri"], domain=first["domain"],
                      language=first.get("declared_language"), split=first["split"], group=first.get("group"))
        rec.segments = [Segment(r["segment_id"], rid, r["start"], r["end"], Label.from_dict(r),
                                parent_segment_id=r.get("parent_segment_id"),
                                # a trimmed piece cut out at build time stays cut out
                                cut_reason=next((x for x in r["reasons"] if x in TRIM_REASONS), None)
                                if r.get("parent_segment_id") else None)
                        for r in sorted(rows, key=lambda r: r["segment_id"])]
        out.append(rec)
    return out


def _recording_rows(release: Release) -> dict[str, dict]:
    try:
        table = pq.read_table(io.BytesIO(release.store.get_bytes("recordings.parquet")))
    except (ObjectNotFound, ValueError):
        return {}
    return {r["recording_id"]: r for r in table.to_pylist() if r.get("recording_id") and r.get("file_key")}


def _stored_labels(runner: Runner, build: BuildConfig | None, recordings: list[Recording]) -> dict[str, Label]:
    """Segment id → the full label (words, decode details) of the recordings' segments and of their
    trimmed pieces, from the build's stored labels, trimmed again as the build trimmed them; none
    for a recording whose stored labels are gone."""
    if build is None or not recordings:
        return {}
    stage = LabelStage(model={}, clips={}, label_key=build.label_key(), resources=Resources())
    labelled = runner.apply(stage, [replace(rec, segments=[]) for rec in recordings], reuse_only=True)
    trimmed = runner.apply(TrimStage(build.filter), labelled)
    out: dict[str, Label] = {}
    for rec in [*labelled, *trimmed]:
        for seg in rec.segments:
            out.setdefault(seg.segment_id, seg.label)
    return out


def refilter_release(store: Store, source: str, release: str, *, thresholds: dict | None = None,
                     domain_thresholds: dict | None = None, endpoint_url: str | None = None,
                     progress: bool = False) -> dict:
    """Write ``release`` from ``source`` with new thresholds; returns a summary."""
    old = Release.open(store, source)
    old_config = _built_config(old)
    manifest = old.manifest().to_pylist()
    default, per_domain = resolve_thresholds(old_config["filter"], thresholds, domain_thresholds,
                                             {r["domain"] for r in manifest})
    endpoint_url = endpoint_url or old_config.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
    was_kept = {r["segment_id"] for r in manifest if r["decision"] == "keep"}
    build = _build_config(old_config)

    runner = Runner(LocalExecutor(), store)
    recordings = runner.apply(FilterStage(default, per_domain), recordings_of(old, manifest))
    from pipelines.build import clips_location

    clips = clips_location(store, build) if build else {"store": store.uri, "prefix": None}
    cut = CutStage({**clips, "endpoint_url": endpoint_url}, source_fallback=True,
                   read_timeout_s=build.ingest.read_timeout_s if build else 600.0)

    config = {**old_config, "release": release, "filter": default.model_dump(),
              "domain_filters": {d: c.model_dump() for d, c in per_domain.items()}, "refiltered_from": source}
    writer = ReleaseWriter(store, release, config=config,
                           max_shard_bytes=old_config.get("shards", {}).get("max_bytes", 256 * 1024**2),
                           max_shard_samples=old_config.get("shards", {}).get("max_samples", 10_000))
    stats = Counter()
    # the newly kept segments' label details: from the build's stored labels, read once
    stored = _stored_labels(runner, build, [rec for rec in recordings
                                            if any(s.kept and s.segment_id not in was_kept for s in rec.segments)])
    groups: dict[tuple[str, str], list[Recording]] = defaultdict(list)
    for rec in recordings:
        groups[(rec.split, rec.domain)].append(rec)
    with writer, tqdm(total=len(manifest), desc="refilter", unit="seg", disable=not progress) as bar:
        for (split, domain), group in sorted(groups.items()):
            reused = _reusable_audio(old, split, domain, {s.segment_id for rec in group for s in rec.segments
                                                          if s.kept and s.segment_id in was_kept})
            ready = []
            for rec in group:
                segments = []
                for seg in rec.segments:
                    if seg.segment_id in reused:  # its audio and sample JSON, as the source release has them
                        flac, meta = reused.pop(seg.segment_id)
                        seg = replace(seg, flac=flac, label=Label.from_dict(meta))
                        rec.licence = meta.get("licence", rec.licence)
                    elif seg.kept:  # kept now only: its label details from the build's stored labels
                        seg = replace(seg, label=stored.get(seg.segment_id, seg.label))
                    segments.append(seg)
                ready.append(replace(rec, segments=segments))
            for rec in runner.stream(cut, ready, timeout=cut.read_timeout_s):
                for seg in rec.segments:
                    row = manifest_row(seg, rec)
                    if seg.kept:
                        writer.add(row, flac=seg.flac, extra=sample_fields(seg, rec))
                        stats["audio_reused" if seg.segment_id in was_kept else "audio_recut"] += 1
                    else:
                        writer.add(row)
                        stats["rejected"] += 1
                    bar.update()
        carried = {}
        for name in CARRIED_FILES:
            try:
                carried[name] = old.store.get_bytes(name)
            except ObjectNotFound:
                pass
        rows = [manifest_row(seg, rec) for rec in recordings for seg in rec.segments]
        rejects = Counter(reason for r in rows for reason in r["reasons"])
        summary = {"source_release": source, "release": release, "segments": len(rows),
                   "domains": sorted({r["domain"] for r in rows}),
                   "kept": sum(r["decision"] == "keep" for r in rows), "rejected": stats["rejected"],
                   "rejects_by_reason": dict(sorted(rejects.items())), "audio_reused": stats["audio_reused"],
                   "audio_recut": stats["audio_recut"], "segments_labelled_now": 0,
                   "thresholds": default.model_dump(), "domain_thresholds": config["domain_filters"]}
        carried["refilter_summary.json"] = json.dumps(summary, indent=2, sort_keys=True).encode()
        info = writer.commit(extra_files=carried)
    summary["counts"] = info["counts"]
    return summary


def _reusable_audio(old: Release, split: str, domain: str, wanted: set[str]) -> dict[str, tuple[bytes, dict]]:
    """FLAC bytes and JSON of ``wanted`` segments, streamed from the source release's shards."""
    found = {}
    if not wanted:
        return found
    for shard in old.shards(split=split, domain=domain):
        for key, group in iter_shard_raw(old.store, shard["url"], sha256=shard["sha256"]):
            if key in wanted:
                found[key] = (group["flac"], json.loads(group["json"]))
    missing = wanted - set(found)
    if missing:
        raise ReleaseError(f"release {old.name}: {len(missing)} kept segments are missing from its "
                           f"{split}/{domain} shards (e.g. {sorted(missing)[0]}); run `stt-corpus verify`")
    return found


