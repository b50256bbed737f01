"""Ingest on real files: every bad kind gets its quarantine reason, good files their recording row."""
from __future__ import annotations

from types import SimpleNamespace

from bad_audio import EXPECTED, make_bad_audio_folder
from pipelines.config import IngestConfig
from pipelines.ingest import Ingest, drop_exact_duplicates, drop_near_duplicates
from pipelines.sources import list_sources


def test_bad_files_get_reasons_and_good_ones_recordings(tmp_path, fixtures_dir):
    folder = make_bad_audio_folder(tmp_path / "raw", fixtures_dir)
    files, ignored = list_sources([SimpleNamespace(uri=str(folder), domain="mixed", language="en", licence="test")])
    assert [u.rsplit("/", 1)[-1] for u in ignored] == ["README.txt"]
    stage = Ingest(**IngestConfig().model_dump())
    rows = drop_exact_duplicates([stage(f.to_dict()) for f in files])
    kept, near = drop_near_duplicates([r for r in rows if r["status"] == "ok"], texts={})  # audio alone here
    rows = [r for r in rows if r["status"] != "ok"] + kept + near
    by_name = {r["uri"].rsplit("/", 1)[-1]: r for r in rows}
    assert set(by_name) == set(EXPECTED)
    for name, reason in EXPECTED.items():
        row = by_name[name]
        if reason is None:
            assert row["status"] == "ok" and row["reason"] is None, (name, row["detail"])
        else:
            assert row["status"] == "quarantine" and row["reason"] == reason, (name, row["reason"], row["detail"])
            assert row["detail"]
    jfk = by_name["jfk-44k-stereo.flac"]
    assert (jfk["orig_sample_rate"], jfk["orig_channels"], jfk["duration"]) == (44100, 2, 11.0)
    assert "jfk-44k-stereo.flac" in by_name["zz-copy-of-jfk.flac"]["detail"]
    assert by_name["osr-8k.wav"]["orig_sample_rate"] == 8000
    assert "osr-8k.wav" in by_name["osr-copy.mp3"]["detail"] and by_name["osr-8k.wav"]["fingerprint"]


def test_too_large_files_are_not_read(tmp_path, fixtures_dir):
    folder = make_bad_audio_folder(tmp_path / "raw", fixtures_dir)
    files, _ = list_sources([SimpleNamespace(uri=str(folder), domain="d", language="en", licence="x")])
    stage = Ingest(**{**IngestConfig().model_dump(), "max_bytes": 1000})
    row = stage(next(f for f in files if f.key == "osr-8k.wav").to_dict())
    assert row["reason"] == "too_large"


def test_recording_id_is_the_pcm_hash_whatever_the_file_name(tmp_path, fixtures_dir):
    folder = make_bad_audio_folder(tmp_path / "raw", fixtures_dir)
    files, _ = list_sources([SimpleNamespace(uri=str(folder), domain="d", language="en", licence="x")])
    stage = Ingest(**IngestConfig().model_dump())
    a, b = (stage(f.to_dict()) for f in files if f.key in ("jfk-44k-stereo.flac", "zz-copy-of-jfk.flac"))
    assert a["recording_id"] == b["recording_id"] and len(a["recording_id"]) == 20


def test_recordings_ingested_without_a_fingerprint_are_ingested_again():
    from pipelines.build import _needs_fingerprint

    assert _needs_fingerprint({"status": "ok"}) and _needs_fingerprint({"status": "ok", "fingerprint": None})
    assert not _needs_fingerprint({"status": "ok", "fingerprint": b"STFP"})
    assert not _needs_fingerprint({"status": "quarantine", "fingerprint": None})
