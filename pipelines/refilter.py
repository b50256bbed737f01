"""Re-filter a release: new thresholds → a new release, from the manifest alone, without ASR.

Every segment of the source release's manifest is decided again with the new thresholds
(optionally per domain). Audio of a segment kept before is copied byte for byte from the
source release's shards; a segment kept now but rejected before has no audio in any shard, so
it is taken from the build's clips of its recording (``work/clips/<segment_key>/``, written once at
ingest) and FLAC-encoded; only when those are gone is the recording decoded again from
``source_uri`` (in a bounded child process, like ingest). Nothing here imports the ASR adapter.
Segment ids, splits and texts are those of the source release.
"""
from __future__ import annotations

import io
import json
import logging
import os
from collections import Counter, defaultdict

import pyarrow.parquet as pq
from tqdm import tqdm

from corpus.audio import decode
from corpus.release import Release, ReleaseError, ReleaseWriter
from corpus.schema import SAMPLE_RATE
from corpus.shards import encode_flac, iter_shard_raw
from corpus.store import ObjectNotFound, Store, open_store
from pipelines.config import BuildConfig, FilterConfig
from pipelines.filter import decide

log = logging.getLogger(__name__)

from corpus.schema import MANIFEST

MANIFEST_FIELDS = tuple(MANIFEST.names)
TRIM_REASONS = ("low_word_prob_run", "unlabelled_gap", "language_mismatch")
CARRIED_FILES = ("quarantine.parquet", "recordings.parquet")


def resolve_thresholds(base: dict, overrides: dict | None, domain_overrides: dict | None,
                       domains: set[str]) -> tuple[FilterConfig, dict[str, FilterConfig]]:
    """The new thresholds, validated; an override for a domain the release lacks is an error."""
    from pydantic import ValidationError

    unknown = sorted(set(domain_overrides or {}) - domains)
    if unknown:
        raise ValueError(f"unknown domain(s) {unknown} in per-domain thresholds; the release has {sorted(domains)}")
    try:
        default = FilterConfig(**{**base, **(overrides or {})})
        per_domain = {d: FilterConfig(**{**default.model_dump(), **o}) for d, o in (domain_overrides or {}).items()}
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ValueError(f"invalid thresholds: {problems}") from None
    return default, per_domain


def _read_source(uri: str, endpoint_url: str | None):
    parent, _, name = uri.rpartition("/")
    store = open_store(parent, endpoint_url=endpoint_url)
    return decode(io.BytesIO(store.get_bytes(name)), name=uri)


def _source_audio(uri: str, endpoint_url: str | None, timeout: float = 600.0):
    """A recording decoded from its source, within a wall-clock bound (raises on timeout or crash)."""
    from pipelines.bounded import call_bounded

    return call_bounded(_read_source, uri, endpoint_url, timeout=timeout, what=f"re-reading {uri}")


def _build_config(config: dict) -> BuildConfig | None:
    try:
        return BuildConfig(**{k: v for k, v in config.items() if k in BuildConfig.model_fields})
    except ValueError:
        return None


def _stored_clips(store: Store, config: dict, recording_id: str,
                  wanted: list[tuple[float, float]]) -> dict[tuple[float, float], object] | None:
    """The wanted (start, end) spans of a recording cut from the build's clips, or None when the
    build's work is gone."""
    from pipelines.build import CLIPS_DIR
    from pipelines.recording import cut_clips, iter_clips

    build = _build_config(config)
    if build is None:
        return None
    try:
        return cut_clips(iter_clips(store, f"{CLIPS_DIR}/{build.segment_key()}/{recording_id}.parquet"), wanted)
    except ObjectNotFound:
        return None


def _label_extras(store: Store, config: dict, recording_id: str, declared: str | None) -> dict[str, dict]:
    """Word probabilities etc. of a recording's segments from the build's work parts, if kept;
    a trimmed piece's are its own (words, text, language), cut again from its parent's label
    with the release's trimming settings, as the build cut them."""
    try:
        build = BuildConfig(**{k: v for k, v in config.items() if k in BuildConfig.model_fields})
        key = f"work/labels/{build.label_key()}/{recording_id}.parquet"
        rows = pq.read_table(io.BytesIO(store.get_bytes(key))).to_pylist()
    except (ObjectNotFound, ValueError):
        return {}
    from pipelines.build import LABEL_EXTRA_FIELDS, trim_pieces

    out = {}
    for row in rows:
        if not row.get("segment_id"):
            continue
        for label in [row, *trim_pieces(row, build.filter, declared)]:
            out.setdefault(label["segment_id"], {k: label.get(k) for k in LABEL_EXTRA_FIELDS})
    return out


def refilter_release(store: Store, source: str, release: str, *, thresholds: dict | None = None,
                     domain_thresholds: dict | None = None, endpoint_url: str | None = None,
                     progress: bool = False) -> dict:
    """Write ``release`` from ``source`` with new thresholds; returns a summary."""
    old = Release.open(store, source)
    old_config = old.config()
    if not isinstance(old_config, dict) or "filter" not in old_config or "sources" not in old_config:
        raise ReleaseError(f"release {source!r} was not made by `stt-corpus build` (its config has no filter); "
                           "only built releases can be re-filtered")
    manifest = old.manifest().to_pylist()
    default, per_domain = resolve_thresholds(old_config["filter"], thresholds, domain_thresholds,
                                             {r["domain"] for r in manifest})
    endpoint_url = endpoint_url or old_config.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")

    rows = []
    for row in manifest:
        # a trimmed piece cut out at build time stays cut out: the cut is not re-made here
        cut = next((r for r in row["reasons"] if r in TRIM_REASONS), None) if row.get("parent_segment_id") else None
        decision, reasons = decide({**row, "trim_reason": cut}, per_domain.get(row["domain"], default))
        rows.append({**row, "decision": decision, "reasons": reasons, "_was_kept": row["decision"] == "keep"})

    config = {**old_config, "release": release, "filter": default.model_dump(),
              "domain_filters": {d: c.model_dump() for d, c in per_domain.items()}, "refiltered_from": source}
    writer = ReleaseWriter(store, release, config=config,
                           max_shard_bytes=old_config.get("shards", {}).get("max_bytes", 256 * 1024**2),
                           max_shard_samples=old_config.get("shards", {}).get("max_samples", 10_000))
    licences = _licences(old)
    stats = Counter()
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["split"], row["domain"])].append(row)
    with writer, tqdm(total=len(rows), desc="refilter", unit="seg", disable=not progress) as bar:
        for (split, domain), group in sorted(groups.items()):
            group.sort(key=lambda r: r["segment_id"])
            reused = _reusable_audio(old, split, domain, {r["segment_id"] for r in group
                                                          if r["decision"] == "keep" and r["_was_kept"]})
            fresh = _fresh_audio(store, old_config, [r for r in group if r["decision"] == "keep" and not r["_was_kept"]],
                                 endpoint_url, licences)
            for row in group:
                was_kept = row.pop("_was_kept")
                clean = {k: row[k] for k in MANIFEST_FIELDS}
                if row["decision"] != "keep":
                    writer.add(clean)
                    stats["rejected"] += 1
                elif was_kept:
                    flac, meta = reused.pop(row["segment_id"])
                    extra = {k: v for k, v in meta.items() if k not in MANIFEST_FIELDS and k != "duration"}
                    writer.add(clean, flac=flac, extra=extra)
                    stats["audio_reused"] += 1
                else:
                    flac, extra = fresh[row["segment_id"]]
                    writer.add(clean, flac=flac, extra=extra)
                    stats["audio_recut"] += 1
                bar.update()
        carried = {}
        for name in CARRIED_FILES:
            try:
                carried[name] = old.store.get_bytes(name)
            except ObjectNotFound:
                pass
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


def _licences(old: Release) -> dict[str, str]:
    try:
        table = pq.read_table(io.BytesIO(old.store.get_bytes("recordings.parquet")), columns=["recording_id", "licence"])
    except (ObjectNotFound, KeyError, ValueError):
        return {}
    return dict(zip(table.column("recording_id").to_pylist(), table.column("licence").to_pylist()))


def _fresh_audio(store: Store, config: dict, rows: list[dict], endpoint_url: str | None,
                 licences: dict[str, str]) -> dict[str, tuple[bytes, dict]]:
    """Newly kept segments: cut from their recordings (decoded once each) and FLAC-encoded."""
    out = {}
    by_recording: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_recording[row["recording_id"]].append(row)
    build = _build_config(config)
    timeout = build.ingest.read_timeout_s if build else 600.0
    for rec, segs in sorted(by_recording.items()):
        clips = _stored_clips(store, config, rec, [(row["start"], row["end"]) for row in segs])
        if clips is not None and not all((row["start"], row["end"]) in clips for row in segs):
            clips = None
        audio = None if clips is not None else _source_audio(segs[0]["source_uri"], endpoint_url, timeout)
        extras = _label_extras(store, config, rec, segs[0].get("declared_language"))
        for row in segs:
            if clips is not None:
                from pipelines.recording import clip_to_float

                pcm = clip_to_float(clips[(row["start"], row["end"])])
            else:
                pcm = audio.pcm[round(row["start"] * SAMPLE_RATE):round(row["end"] * SAMPLE_RATE)]
            extra = {**extras.get(row["segment_id"], {}), "licence": licences.get(rec, "unknown")}
            out[row["segment_id"]] = (encode_flac(pcm), extra)
    return out
