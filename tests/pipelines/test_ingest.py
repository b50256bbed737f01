"""Ingest on real files: every bad kind gets its quarantine reason, good files their recording row."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from bad_audio import EXPECTED, make_bad_audio_folder
from pipelines.config import IngestConfig
from corpus.schema import Recording
from pipelines.ingest import DropExactDuplicates, DropNearDuplicates, Ingest, IngestStage, listed
from pipelines.sources import list_sources


def test_bad_files_get_reasons_and_good_ones_recordings(tmp_path, fixtures_dir):
    folder = make_bad_audio_folder(tmp_path / "raw", fixtures_dir)
    files, ignored = list_sources([SimpleNamespace(uri=str(folder), domain="mixed", language="en", licence="test")])
    assert [u.rsplit("/", 1)[-1] for u in ignored] == ["README.txt"]
    stage = Ingest(**IngestConfig().model_dump())
    ingest = IngestStage(stage, workers=1, placement={})
    recs = DropExactDuplicates().process(ingest.process([listed(f) for f in files]))
    recs = DropNearDuplicates().process(recs)  # no segments here: by audio alone
    by_name = {r.uri.rsplit("/", 1)[-1]: {**r.file_row(), "fingerprint": r.fingerprint} for r in recs}
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


def test_stored_ingest_parts_are_reused_unless_they_lack_a_fingerprint_or_clips():
    stage = IngestStage(Ingest(**IngestConfig().model_dump()), workers=1, placement={}, clips_done={"r1"})
    listed_file = Recording(file_key="f", source_uri="s", key="k", uri="u", domain="d", status="listed")

    def stored(**kw):
        return Recording(**{"file_key": "f", "source_uri": "s", "key": "k", "uri": "u", "domain": "d", **kw})

    assert not stage.reuse(listed_file, stored(recording_id="r1"))  # ingested before fingerprints existed
    assert not stage.reuse(listed_file, stored(recording_id="r2", fingerprint=b"STFP"))  # no clips for this segmentation
    assert stage.reuse(listed_file, stored(recording_id="r1", fingerprint=b"STFP"))
    assert stage.reuse(listed_file, stored(status="quarantine", reason="silent"))
    assert not stage.keep_part(stored(status="deferred", reason="timeout"))  # read again next run
    # what the sources declare now (licence, domain, language) wins over the stored row
    row = stored(recording_id="r1", licence="old", status="ok").file_row(fingerprint=True)
    assert stage.decode(replace(listed_file, licence="CC0-1.0"), [row]).licence == "CC0-1.0"
