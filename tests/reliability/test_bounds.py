"""A wall-clock bound on every worker task that reads a file (issue 13): the ingest read (the only
read of a source file in a build), the cut task (reads a recording's clips part) and a
re-filter's re-read of a source all stop within their bound and say so; none can stall a build."""
from __future__ import annotations

import glob
import os
import tempfile
import time
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from pipelines.bounded import WorkTimeout
from pipelines.config import IngestConfig, SegmentConfig
from pipelines.ingest import Ingest
from pipelines.sources import list_sources
from rel_helpers import local_ray  # noqa: F401  (fixture)

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def slow_file(tmp_path_factory):
    """Ten minutes of noise at 48 kHz stereo: seconds of decoding, far more than the bounds below."""
    folder = tmp_path_factory.mktemp("slow")
    rng = np.random.default_rng(3)
    with sf.SoundFile(folder / "noise.flac", "w", samplerate=48000, channels=2, format="FLAC", subtype="PCM_16") as f:
        for _ in range(10):
            f.write((0.1 * rng.standard_normal((48000 * 60, 2))).astype(np.float32))
    return folder


def _ingest_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "stt-ingest-*")))


def test_an_ingest_read_past_its_bound_is_stopped_and_deferred(slow_file, tmp_path):
    files, _ = list_sources([SimpleNamespace(uri=str(slow_file), domain="d", language="en", licence="x")])
    bound = 0.3
    stage = Ingest(**{**IngestConfig().model_dump(), "read_timeout_s": bound}, segment=SegmentConfig().model_dump(),
                   clips_store=str(tmp_path / "store"), clips_prefix="c")
    stage(files[0].to_dict())  # the first call also starts the fork server: its imports are not timed below
    before = _ingest_dirs()
    start = time.perf_counter()
    row = stage(files[0].to_dict())
    took = time.perf_counter() - start
    assert (row["status"], row["reason"]) == ("deferred", "timeout"), row["detail"]
    assert f"within {bound:g} s" in row["detail"]
    assert took < bound + 10, f"stopped after {took:.1f} s"
    assert _ingest_dirs() <= before, "the killed reader's scratch (file copy, PCM spool) is removed"
    # with room to finish, the same file is a recording
    ok = Ingest(**IngestConfig().model_dump())(files[0].to_dict())
    assert ok["status"] == "ok" and ok["duration"] == 600.0


def test_a_stalled_cut_task_is_cancelled_within_its_bound(local_ray, tmp_path):
    from corpus.schema import Recording
    from corpus.store import open_store
    from pipelines.runner import RayExecutor, Runner
    from pipelines.stages import Stage

    class StalledCut(Stage):  # defined here: it travels to the worker by value
        name = "cut"

        def process(self, batch):
            time.sleep(3600)

    rec = Recording(file_key="f", source_uri="s", key="k", uri="u", domain="d", recording_id="abc")
    runner = Runner(RayExecutor(local_ray), open_store(tmp_path))
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match="cut of recording abc: no result within 2 s"):
        list(runner.stream(StalledCut(), [rec], timeout=2.0))
    assert time.perf_counter() - start < 30


def test_a_refilters_reread_of_a_source_is_bounded(slow_file):
    from pipelines.cut import _source_audio

    uri = (slow_file / "noise.flac").as_uri()
    start = time.perf_counter()
    with pytest.raises(WorkTimeout, match="re-reading"):
        _source_audio(uri, None, timeout=0.2)
    assert time.perf_counter() - start < 20
