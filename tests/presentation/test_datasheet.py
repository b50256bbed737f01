"""The release datasheet on a local dir and on moto S3: a build-like release and a reference release."""
from __future__ import annotations

import argparse
import io
import json
import re
from collections import Counter
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from presentation.datasheet import add_cli, render_datasheet, write_build_datasheet, write_datasheet
from presentation.run_summary import format_summary
from reference.gen_audio import generate
from corpus.release import Release, ReleaseWriter, verify_release
from corpus.schema import QUARANTINE, RECORDINGS, recording_id, segment_id
from corpus.store import S3Store
from reference.releases import build_truth_release

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

FILTER = {"min_avg_logprob": -1.0, "max_no_speech_prob": 0.6, "max_compression_ratio": 2.4,
          "min_chars_per_second": 3.0, "max_chars_per_second": 30.0, "min_seconds": 1.0, "max_seconds": 30.5,
          "max_word_repeats": 4}
CONFIG = {
    "release": "built", "store": "./store",
    "sources": [{"uri": "s3://raw/phone", "domain": "phone", "language": "en", "licence": "CC-BY-4.0", "include": "*"},
                {"uri": "s3://raw/street", "domain": "street", "language": "en", "licence": "CC0-1.0", "include": "*"}],
    "model": {"name": "tiny.en", "device": "cpu", "compute_type": "int8", "batch_size": 8, "beam_size": 1,
              "word_timestamps": True, "cpu_threads": 0},
    "filter": FILTER,
    "domain_filters": {"street": {**FILTER, "min_avg_logprob": -1.4}},
    "splits": {"train": 0.8, "validation": 0.1, "test": 0.1},
}
DECODE_PARAMS = json.dumps({"batch_size": 8, "beam_size": 1, "temperature": 0.0}, sort_keys=True)
# (domain, split, seed, licence): street-2 goes to train, phone recordings spread over three splits
RECORDINGS_PLAN = [("phone", "train", 1, "CC-BY-4.0"), ("phone", "train", 2, "CC-BY-4.0"),
                   ("phone", "validation", 3, "CC-BY-4.0"), ("phone", "test", 4, "CC-BY-4.0"),
                   ("street", "train", 5, "CC0-1.0"), ("street", "train", 6, "CC0-1.0"),
                   ("street", "test", 7, "CC0-1.0")]
QUARANTINED = [("phone", "decode_error"), ("phone", "too_short"), ("street", "decode_error"),
               ("street", "silent"), ("street", "decode_error")]
def _calibration_point(threshold: float, hours: float, share_bad: float, kept: int) -> dict:
    return {"threshold": threshold, "segments": 40, "kept": kept, "hours_kept": hours, "share_bad": share_bad,
            "wer_kept": round(0.5 * share_bad + 0.03, 6), "good_hours_kept": None if kept == 0 else 0.9}


# what `stt-corpus calibrate` writes: a long curve for phone (listed spread out), none chosen for street
PHONE_CURVE = [_calibration_point(round(0.02 * i, 6), round(0.006 * (1 - i / 30), 6), round(0.2 * (1 - i / 30) ** 2, 6),
                                  40 - i) for i in range(30)]
PHONE_CHOSEN = PHONE_CURVE[12]
CALIBRATION = {
    "target": {"share_bad_max": 0.05, "bad_wer": 0.3, "good_wer": 0.1},
    "confidence_model": {"features": ["avg_logprob"], "weights": [1.0], "bias": 0.0},
    "disagreements": [], "unmatched_gold": 0,
    "domains": {
        "phone": {"curve": PHONE_CURVE, "chosen": PHONE_CHOSEN, "signals": {},
                  "default_thresholds": _calibration_point(None, 0.0041, 0.11, 30),
                  "release_thresholds": _calibration_point(None, 0.0039, 0.10, 28),
                  "heldout": _calibration_point(None, 0.0030, 0.07, 20)},
        "street": {"curve": [_calibration_point(t, h, b, k) for t, h, b, k in
                             ((0.1, 0.0040, 0.30, 20), (0.5, 0.0031, 0.19, 14), (0.9, 0.0012, 0.12, 5))],
                   "chosen": None, "signals": {},
                   "default_thresholds": _calibration_point(None, 0.0040, 0.30, 20),
                   "release_thresholds": _calibration_point(None, 0.0035, 0.25, 17),
                   "heldout": _calibration_point(None, 0.0, 0.0, 0)},
    },
}


def _pcm(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.2 * np.sin(2 * np.pi * (140 + 15 * seed) * t) + 0.03 * rng.standard_normal(t.size)).astype(np.float32)


def _decide(row: dict, thresholds: dict) -> list[str]:
    reasons = []
    if row["avg_logprob"] < thresholds["min_avg_logprob"]:
        reasons.append("low_avg_logprob")
    if row["no_speech_prob"] > thresholds["max_no_speech_prob"]:
        reasons.append("high_no_speech_prob")
    if row["compression_ratio"] > thresholds["max_compression_ratio"]:
        reasons.append("high_compression_ratio")
    if row["end"] - row["start"] < thresholds["min_seconds"]:
        reasons.append("too_short")
    return reasons


def _build_like_release(store, name: str, *, leak: bool = False, calibration: bool = True,
                        quarantine: bool = True, recordings_table: bool = True) -> dict:
    """A release as `stt-corpus build` leaves it: confidences, rejects, quarantine, recordings, calibration."""
    rng = np.random.default_rng(42)
    rows, recordings = [], []
    for domain, split, seed, licence in RECORDINGS_PLAN:
        seconds = 12.0 + seed
        pcm = _pcm(seed, seconds)
        rec = recording_id(pcm)
        uri = f"s3://raw/{domain}/{domain}-{seed:03d}.wav"
        recordings.append({"file_key": f"f{seed}", "recording_id": rec, "source_uri": f"s3://raw/{domain}",
                           "key": uri.rsplit("/", 1)[-1], "uri": uri, "domain": domain, "status": "ok",
                           "language": "en", "licence": licence, "duration": seconds, "orig_sample_rate": 8000,
                           "orig_channels": 1, "codec": "pcm_mulaw", "pcm_sha256": rec * 3})
        start = 0.0
        n = 0
        while start < seconds - 0.6:
            end = min(seconds, round(start + float(rng.uniform(0.5, 3.5)), 3))
            row_split = "validation" if leak and n == 1 and seed == 1 else split
            row = {"segment_id": segment_id(rec, start, end), "recording_id": rec, "source_uri": uri,
                   "domain": domain, "split": row_split, "start": start, "end": end, "text": f"words {seed} {n}",
                   "avg_logprob": float(rng.normal(-0.7, 0.45)), "no_speech_prob": float(rng.beta(1.2, 6.0)),
                   "compression_ratio": float(rng.gamma(9.0, 0.18)), "mean_word_prob": float(rng.beta(8.0, 2.0)),
                   "group": rec}
            reasons = _decide(row, {**FILTER, **CONFIG["domain_filters"].get(domain, {})})
            row.update(decision="reject" if reasons else "keep", reasons=reasons)
            a, b = round(start * 16000), round(end * 16000)
            rows.append((row, pcm[a:b]))
            start, n = round(end + 0.1, 3), n + 1
    rows.sort(key=lambda r: r[0]["segment_id"])
    quarantine_rows = quarantine
    quarantine = [{"file_key": f"q{i}", "source_uri": f"s3://raw/{d}", "key": f"bad-{i}.wav",
                   "uri": f"s3://raw/{d}/bad-{i}.wav", "domain": d, "status": "quarantine", "reason": r,
                   "detail": f"{r} detail", "size": 1000 + i} for i, (d, r) in enumerate(QUARANTINED)]
    extra_files = {"quarantine.parquet": _parquet(quarantine if quarantine_rows else [], QUARANTINE
                                                  if quarantine_rows else pa.schema([("uri", pa.string())])),
                   "build_summary.json": b"{}"}
    if recordings_table:
        extra_files["recordings.parquet"] = _parquet(recordings, RECORDINGS)
    with ReleaseWriter(store, name, config={**CONFIG, "release": name}, max_shard_bytes=150_000) as writer:
        for row, pcm in rows:
            keep = row["decision"] == "keep"
            writer.add(row, pcm=pcm if keep else None,
                       extra={"model_id": "faster-whisper:tiny.en", "decode_params": DECODE_PARAMS, "licence": "x"})
        info = writer.commit(extra_files=extra_files)
    if calibration:
        Release.open(store, name).store.put_bytes("calibration.json", json.dumps(CALIBRATION).encode())
    return info


def _parquet(rows: list[dict], schema: pa.Schema) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- reading the documents back


def md_tables(md: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table: (headers, rows of cells)."""
    tables, block = [], []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            block.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif block:
            tables.append((block[0], block[2:]))
            block = []
    return tables


def md_table(md: str, *headers: str) -> list[dict]:
    found = [(h, rows) for h, rows in md_tables(md) if h[:len(headers)] == list(headers)]
    assert len(found) == 1, f"expected one table headed {headers}, found {len(found)}"
    h, rows = found[0]
    return [dict(zip(h, r)) for r in rows]


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._id = self._row = self._cell = None
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._id = attrs.get("id")
            self.tables[self._id] = []
        elif tag == "tr" and self._id is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "script":
            self.scripts += 1

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._id].append(self._row)
            self._row = None
        elif tag == "table":
            self._id = None


def html_tables(page: str) -> _Tables:
    parser = _Tables()
    parser.feed(page)
    return parser


def md_images(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


def assert_real_png(data: bytes, what: str) -> np.ndarray:
    import matplotlib.image

    assert data[:8] == PNG_SIGNATURE, f"{what} is not a PNG"
    image = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert image.ndim == 3 and image.shape[0] > 150 and image.shape[1] > 300, f"{what}: {image.shape}"
    assert float(image[..., :3].var()) > 1e-3, f"{what} is a blank single-colour image"
    rgb = np.round(image[..., :3] * 255).astype(np.uint32)
    colours = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
    assert colours.size > 20, f"{what} has almost no content ({colours.size} colours)"
    return image


def read_datasheet(store, name: str) -> tuple[str, str]:
    rstore = Release.open(store, name).store
    return rstore.get_bytes("datasheet.md").decode(), rstore.get_bytes("datasheet.html").decode()


def assert_plots_are_real(store, name: str, md: str, page: str, keys: list[str]) -> list[str]:
    rstore = Release.open(store, name).store
    in_md, in_html = md_images(md), html_tables(page).images
    assert in_md == in_html, "the markdown and the HTML show the same plots"
    assert sorted(in_md) == sorted(k for k in keys if k.startswith("plots/"))
    assert sorted(rstore.list("plots")) == sorted(in_md), "no stale or unreferenced plot"
    for key in in_md:
        assert_real_png(rstore.get_bytes(key), key)
    return in_md


# --------------------------------------------------------------------------- tests


def test_datasheet_of_a_built_release(store):
    info = _build_like_release(store, "built")
    keys = write_datasheet(store, "built")
    assert keys[-2:] == ["datasheet.md", "datasheet.html"]
    md, page = read_datasheet(store, "built")
    release = Release.open(store, "built")
    manifest = release.manifest().to_pylist()
    tables = html_tables(page)
    assert tables.scripts == 0, "readable without JavaScript"
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "element ids are unique"

    # hours per domain and split: the numbers of RELEASE.json, in the markdown and in the HTML
    recorded = info["hours"]["kept_by_domain_split"]
    hours = md_table(md, "domain", "train", "validation", "test", "total")
    assert [r["domain"] for r in hours] == ["phone", "street", "total"]
    for row in hours[:-1]:
        for split in ("train", "validation", "test"):
            assert row[split] == f"{recorded[row['domain']].get(split, 0.0):.4f}"
        assert row["total"] == f"{sum(recorded[row['domain']].values()):.4f}"
    assert hours[-1]["total"] == f"{info['hours']['kept']:.4f}"
    assert tables.tables["table-hours"][1:] == [list(r.values()) for r in hours]
    assert "differ from the kept segments" not in md

    # segments per domain: counts from the manifest
    for row in md_table(md, "domain", "recordings", "segments", "kept", "rejected"):
        mine = [m for m in manifest if m["domain"] == row["domain"]]
        assert int(row["segments"]) == len(mine)
        assert int(row["rejected"]) == sum(m["decision"] == "reject" for m in mine)
        assert int(row["recordings"]) == len({m["recording_id"] for m in mine})

    # rejects by reason: counts from the manifest, and the plot of them
    expected = Counter(r for m in manifest for r in m["reasons"])
    assert expected["low_avg_logprob"] and expected["high_compression_ratio"], "the fixture rejects for reasons"
    rejects = md_table(md, "reason", "segments", "share of rejected", "hours")
    assert {r["reason"]: int(r["segments"]) for r in rejects} == dict(expected)
    assert f"{info['counts']['rejected']} segments rejected" in md
    assert [row[:2] for row in tables.tables["table-rejects"][1:]] == [[r["reason"], r["segments"]] for r in rejects]

    # quarantine by reason
    quarantine = md_table(md, "reason", "files", "bytes", "by domain")
    assert {r["reason"]: int(r["files"]) for r in quarantine} == dict(Counter(r for _, r in QUARANTINED))
    assert next(r for r in quarantine if r["reason"] == "decode_error")["by domain"] == "phone 1, street 2"

    # calibration: each rule per domain, and the curve points (a long curve is spread out, its chosen point kept)
    summary = md_table(md, "domain", "rule", "threshold", "kept segments", "hours kept", "share bad", "WER kept")
    by_rule = {(r["domain"], r["rule"]): r for r in summary}
    assert by_rule[("phone", "calibrated (chosen)")]["threshold"] == "0.24"
    assert by_rule[("phone", "calibrated (chosen)")]["hours kept"] == f"{PHONE_CHOSEN['hours_kept']:.4f}"
    assert by_rule[("phone", "calibrated, held out")]["kept segments"] == "20"
    assert by_rule[("street", "calibrated (chosen)")]["threshold"] == "no threshold meets the target"
    assert by_rule[("street", "release thresholds")]["share bad"] == "0.25"
    curve = md_table(md, "domain", "threshold", "hours kept", "share bad", "WER kept")
    phone_points = [r["threshold"] for r in curve if r["domain"] == "phone"]
    assert 12 <= len(phone_points) <= 13 and phone_points[0] == "0" and phone_points[-1] == "0.58"
    assert "0.24" in phone_points, "the chosen point is listed"
    assert [r["threshold"] for r in curve if r["domain"] == "street"] == ["0.1", "0.5", "0.9"]
    assert "`share_bad_max` = 0.05" in md

    # licences per source, from recordings.parquet
    licences = md_table(md, "source", "domain", "licence", "recordings", "hours in", "hours kept")
    assert [(r["source"], r["licence"], int(r["recordings"])) for r in licences] == [
        ("s3://raw/phone", "CC-BY-4.0", 4), ("s3://raw/street", "CC0-1.0", 3)]
    phone_in = sum(12.0 + s for d, _, s, _ in RECORDINGS_PLAN if d == "phone") / 3600
    assert licences[0]["hours in"] == f"{phone_in:.4f}"
    assert licences[0]["hours kept"] == f"{sum(recorded['phone'].values()):.4f}"

    # splits: recordings per split, and the leak check passes
    splits = md_table(md, "split", "recordings", "kept segments", "hours kept")
    assert {r["split"]: int(r["recordings"]) for r in splits} == dict(Counter(s for _, s, _, _ in RECORDINGS_PLAN))
    assert "**Check passed:** no recording appears in two splits (7 recordings checked" in md
    assert "No groups are declared beyond recordings" in md

    # model, labels, thresholds
    model = {r["parameter"]: r["value"] for r in md_table(md, "parameter", "value")}
    assert model["name"] == "tiny.en" and model["beam_size"] == "1"
    labels = md_table(md, "model_id", "decode_params", "label_source", "shards sampled")
    assert [(r["model_id"], r["decode_params"]) for r in labels] == [("faster-whisper:tiny.en", DECODE_PARAMS)]
    assert int(labels[0]["shards sampled"]) == len({(s["split"], s["domain"]) for s in release.shards()})
    thresholds = {r["threshold"]: r for r in md_table(md, "threshold", "default", "street")}
    assert thresholds["min_avg_logprob"]["default"] == "-1" and thresholds["min_avg_logprob"]["street"] == "-1.4"
    assert thresholds["max_no_speech_prob"]["street"] == "0.6"
    assert thresholds["min_avg_logprob"]["reasons"] == "low_avg_logprob", "the table comes from the filter's rules"
    assert thresholds["max_word_chars"]["default"] == "—", "a rule's setting the release's config lacks"

    # confidences: medians per domain and metric
    conf = md_table(md, "domain", "metric", "kept n", "kept median", "rejected n", "rejected median")
    phone_lp = [m["avg_logprob"] for m in manifest if m["domain"] == "phone" and m["decision"] == "keep"]
    row = next(r for r in conf if r["domain"] == "phone" and r["metric"] == "avg_logprob")
    assert int(row["kept n"]) == len(phone_lp) and row["kept median"] == f"{np.median(phone_lp):.3f}"
    assert {r["metric"] for r in conf} == {"avg_logprob", "no_speech_prob", "compression_ratio", "mean_word_prob"}

    plots = assert_plots_are_real(store, "built", md, page, keys)
    assert sorted(plots) == ["plots/calibration.png", "plots/confidence-phone.png", "plots/confidence-street.png",
                             "plots/durations.png", "plots/hours.png", "plots/rejects.png"]
    assert verify_release(store, "built") == [], "the datasheet does not disturb the release"


def test_datasheet_of_a_reference_release(store, tmp_path):
    audio = tmp_path / "raw"
    generate(audio, minutes=1.0, seed=5)
    info = build_truth_release(audio, store, "gold")
    keys = write_datasheet(store, "gold")
    md, page = read_datasheet(store, "gold")
    recorded = info["hours"]["kept_by_domain_split"]
    hours = md_table(md, "domain", "train", "validation", "test", "total")
    assert {r["domain"] for r in hours} == set(recorded) | {"total"}
    for row in hours:
        if row["domain"] != "total":
            for split, h in recorded[row["domain"]].items():
                assert row[split] == f"{h:.4f}"
    assert hours[-1]["total"] == f"{info['hours']['kept']:.4f}"
    # what a reference release lacks is said, not invented
    assert "No segment was rejected." in md
    assert "No segment has ASR confidences" in md
    assert "`quarantine.parquet` is absent in this release" in md
    assert "`recordings.parquet` is absent in this release" in md
    assert "no gold set was given" in md
    assert "has no `model` section (reference-labelled" in md
    assert "has no `filter` section" in md
    licences = md_table(md, "source", "domain", "licence", "recordings", "hours in", "hours kept")
    assert sum(int(r["recordings"]) for r in licences) == info["counts"]["recordings"]
    assert {r["licence"] for r in licences} == {"unknown (not recorded)"}
    assert {r["hours in"] for r in licences} == {"—"}
    labels = md_table(md, "model_id", "decode_params", "label_source", "shards sampled")
    assert [(r["model_id"], r["label_source"]) for r in labels] == [("—", "reference")]
    assert "**Check passed:** no recording appears in two splits" in md
    assert "No groups are declared beyond recordings" in md
    plots = assert_plots_are_real(store, "gold", md, page, keys)
    assert sorted(plots) == ["plots/durations.png", "plots/hours.png"]


def test_a_recording_in_two_splits_and_a_leaking_group_are_reported(store):
    _build_like_release(store, "leaky", leak=True, calibration=False, quarantine=False, recordings_table=False)
    md, _, _ = render_datasheet(Release.open(store, "leaky"))
    # an empty quarantine (what a build without bad files writes) and licences from the config's sources
    assert "No file was quarantined" in md
    assert "`recordings.parquet` is absent in this release; licences come from the manifest's `source_uri`" in md
    licences = md_table(md, "source", "domain", "licence", "recordings", "hours in", "hours kept")
    assert [(r["source"], r["licence"], r["recordings"], r["hours in"]) for r in licences] == [
        ("s3://raw/phone", "CC-BY-4.0", "4", "—"), ("s3://raw/street", "CC0-1.0", "3", "—")]
    assert "differ from the kept segments" not in md
    manifest = Release.open(store, "leaky").manifest().to_pylist()
    leaked = {m["recording_id"] for m in manifest if m["split"] == "validation"} & \
        {m["recording_id"] for m in manifest if m["split"] == "train"}
    assert len(leaked) == 1
    assert "**Check FAILED:** 1 of 7 recordings appear in more than one split" in md
    assert f"`{leaked.pop()}`: train, validation" in md

    class WithGroups(Release):
        """A manifest that declares speaker groups: street-5 and phone-4 share one speaker."""

        def manifest(self):
            table = super().manifest()
            uris = table.column("source_uri").to_pylist()
            groups = ["spk-A" if u.endswith(("street-005.wav", "phone-004.wav")) else u.rsplit("/", 1)[-1]
                      for u in uris]
            return table.set_column(table.schema.get_field_index("group"), "group", pa.array(groups))

    plain = Release.open(store, "leaky")
    # RELEASE.json hours that disagree with the manifest are flagged
    info = json.loads(json.dumps(plain.info))
    info["hours"]["kept_by_domain_split"]["phone"]["train"] += 0.01
    tampered, _, _ = render_datasheet(Release(plain.name, plain.store, info))
    assert "**Warning:** the hours in `RELEASE.json` differ from the kept segments of the manifest" in tampered

    md, page, _ = render_datasheet(WithGroups(plain.name, plain.store, plain.info))
    assert "**Check FAILED:** 2 of 6 declared groups appear in more than one split (column `group`)" in md
    assert "`spk-A`: train, test" in md
    assert "<li><code>spk-A</code>: train, test</li>" in page


def test_cli_writes_and_regenerating_overwrites(store, capsys):
    _build_like_release(store, "v1", calibration=False)
    parser = argparse.ArgumentParser(prog="stt-corpus")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    argv = ["datasheet", "--store", store.uri, "--release", "v1"]
    if isinstance(store, S3Store):
        argv += ["--endpoint-url", store.endpoint_url]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    printed = capsys.readouterr().out.split()
    md, page = read_datasheet(store, "v1")
    assert printed[-2:] == ["datasheet.md", "datasheet.html"] and "plots/hours.png" in printed
    assert_plots_are_real(store, "v1", md, page, printed)
    assert "no gold set was given" in md and "plots/calibration.png" not in printed

    # regenerate after tampering and after a calibration arrived: everything is rewritten
    rstore = Release.open(store, "v1").store
    rstore.put_bytes("datasheet.md", b"stale")
    rstore.put_bytes("datasheet.html", b"stale")
    rstore.put_bytes("plots/old-section.png", rstore.get_bytes("plots/hours.png"))
    rstore.put_bytes("calibration.json", json.dumps(CALIBRATION).encode())
    keys = write_datasheet(store, "v1")
    md2, page2 = read_datasheet(store, "v1")
    assert "plots/calibration.png" in keys and "plots/calibration.png" in md2 and "no gold set" not in md2
    assert not rstore.exists("plots/old-section.png"), "a plot the datasheet no longer draws is removed"
    assert_plots_are_real(store, "v1", md2, page2, keys)
    assert md2.replace(md2[md2.index("## Calibration"):md2.index("## Licences")], "") == \
        md.replace(md[md.index("## Calibration"):md.index("## Licences")], ""), "only the calibration changed"

    # the same release renders to the same bytes: rendering again gives what was written
    again_md, again_html, again_plots = render_datasheet(Release.open(store, "v1"))
    assert (again_md, again_html) == (md2, page2)
    assert again_plots == {k.removeprefix("plots/"): rstore.get_bytes(k) for k in keys if k.startswith("plots/")}


def test_cli_help_explains_the_command(capsys):
    parser = argparse.ArgumentParser(prog="stt-corpus")
    add_cli(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["datasheet", "--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    assert "usage: stt-corpus datasheet" in shown and "--release NAME" in shown and "--endpoint-url" in shown
    assert len(shown.split()) > 80 and "calibration" in shown


def test_missing_release_is_an_error(store):
    from corpus.release import ReleaseError

    with pytest.raises(ReleaseError, match="no release 'nope'"):
        write_datasheet(store, "nope")


def test_after_a_build_the_caller_writes_the_datasheet_and_the_summary_points_to_it(store):
    """What `stt-corpus build` and the build flow do with run_build's summary (run_build writes no datasheet)."""
    info = _build_like_release(store, "built")
    counts = info["counts"]
    summary = {"domains": {"phone": {"files": 4, "quarantined": 2, "hours_in": 0.016, "segments": 30, "kept": 20,
                                     "hours_kept": 0.009}},
               "rejects_by_reason": {"low_avg_logprob": 3}, "quarantine_by_reason": {"decode_error": 2},
               "deferred_by_reason": {}, "label_throughput_audio_s_per_s": 12.5, "recordings_labelled_now": 4,
               "segments_labelled_now": 30, "stage_seconds": {"list": 0.1, "label": 2.0}, "wall_seconds": 3.0,
               "release": {"name": "built", "store": store.uri, "counts": counts}}
    assert not Release.open(store, "built").store.exists("datasheet.md")
    assert write_build_datasheet(store, summary) is summary
    assert summary["release"]["datasheet"] == store.url("releases/built/datasheet.html")
    md, _ = read_datasheet(store, "built")
    assert md.startswith("# Datasheet: release built")
    seconds = summary["stage_seconds"]["datasheet"]
    assert seconds > 0 and summary["wall_seconds"] == pytest.approx(3.0 + seconds)
    text = format_summary(summary).splitlines()
    assert text[-1] == f"datasheet: {store.url('releases/built/datasheet.html')}"
    assert text[-2] == (f"release built at {store.uri}: {counts['kept']} kept of {counts['segments']} segments "
                        f"in {counts['shards']} shards")
    assert text[0].split() == ["domain", "files", "quarant.", "hours", "in", "segments", "kept", "hours", "kept"]
    assert text[1].split() == ["phone", "4", "2", "0.016", "30", "20", "0.009"]
    assert "rejected segments by reason: low_avg_logprob 3" in text
    assert text[-3].startswith(f"wall time: {summary['wall_seconds']:.1f} s  (stages: list 0.1 s, label 2.0 s, datasheet ")
