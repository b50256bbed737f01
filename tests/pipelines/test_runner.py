"""The runner: stages over recordings, work parts kept and reused, outputs streamed in order."""
from __future__ import annotations

from dataclasses import replace

import pytest

from corpus.schema import Label, Recording, Segment
from corpus.store import open_store
from pipelines.runner import LocalExecutor, RayExecutor, Runner, done_parts, work_prefix
from pipelines.stages import Resources, Stage


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from pipelines.ray_local import init_local, loopback_only

    if ray.is_initialized():
        ray.shutdown()
    with loopback_only():  # a new cluster, on 127.0.0.1 only
        init_local(ray, num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="WARNING")
        yield ray
        ray.shutdown()


def _rec(i: int, **kw) -> Recording:
    return Recording(file_key=f"f{i}", source_uri="s", key=f"k{i}", uri=f"u{i}", domain="d", recording_id=f"r{i}",
                     duration=float(i + 1), **kw)


class CountWords(Stage):
    """A kept stage: one segment per recording, labelled with the recording's key."""

    name = "count"
    work = "count/v1"

    def __init__(self):
        self.setups = 0
        self.processed: list[str] = []

    def setup(self):
        self.setups += 1

    def process(self, batch):
        self.processed += [r.recording_id for r in batch]
        return [replace(r, segments=[Segment(f"{r.recording_id}-s", r.recording_id, 0.0, 1.0, Label(text=r.key))])
                for r in batch]

    def encode(self, rec):
        return [{"segment_id": s.segment_id, "start": s.start, "end": s.end, **s.label.to_dict()} for s in rec.segments]

    def decode(self, rec, rows):
        return replace(rec, segments=[Segment(r["segment_id"], rec.recording_id, r["start"], r["end"],
                                              Label.from_dict(r)) for r in rows])

    def keep_part(self, rec):
        return rec.recording_id != "r2"  # r2's output is not final: made again next run


def test_parts_are_written_reused_and_not_kept_when_not_final(tmp_path):
    store = open_store(tmp_path)
    recs = [_rec(i) for i in range(4)] + [_rec(9, status="quarantine", reason="silent")]
    stage = CountWords()
    out = Runner(LocalExecutor(), store).apply(stage, recs)
    assert stage.setups == 1 and stage.processed == ["r0", "r1", "r2", "r3"]  # the quarantined file passes through
    assert [o.segments[0].label.text for o in out[:4]] == ["k0", "k1", "k2", "k3"] and out[4] == recs[4]
    assert done_parts(store, work_prefix("count/v1")) == {"r0", "r1", "r3"}

    again = CountWords()
    runner = Runner(LocalExecutor(), store)
    out2 = runner.apply(again, recs)
    assert again.processed == ["r2"] and runner.ran["count"] == 1 and runner.made_now["count"] == [2]
    assert [o.segments for o in out2] == [o.segments for o in out]

    only = CountWords()
    out3 = Runner(LocalExecutor(), store).apply(only, [*recs, _rec(5)], reuse_only=True)
    assert only.processed == [] and out3[5].segments == []  # nothing stored for r5: left as it was


def test_a_stored_part_that_cannot_stand_is_made_again(tmp_path):
    store = open_store(tmp_path)
    Runner(LocalExecutor(), store).apply(CountWords(), [_rec(0)])

    class Stricter(CountWords):
        def reuse(self, rec, stored):
            return False

    stage = Stricter()
    Runner(LocalExecutor(), store).apply(stage, [_rec(0)])
    assert stage.processed == ["r0"]


def test_driver_stages_see_the_whole_list_and_streams_keep_order(tmp_path):
    class Reverse(Stage):
        name = "reverse"
        on = "driver"

        def process(self, batch):
            return batch[::-1]

    class Tag(Stage):
        name = "tag"

        def wants(self, rec):
            return rec.recording_id != "r1"

        def process(self, batch):
            return [replace(r, codec="tagged") for r in batch]

    runner = Runner(LocalExecutor(), open_store(tmp_path))
    recs = runner.run([Reverse()], [_rec(i) for i in range(3)])
    assert [r.recording_id for r in recs] == ["r2", "r1", "r0"]
    streamed = list(runner.stream(Tag(), recs, timeout=10))
    assert [(r.recording_id, r.codec) for r in streamed] == [("r2", "tagged"), ("r1", None), ("r0", "tagged")]


@pytest.mark.slow
def test_ray_executor_runs_tasks_and_actors_with_one_setup_per_actor(local_ray, tmp_path):
    import os

    class Where(Stage):  # defined here: it travels to the workers by value
        name = "where"

        def __init__(self, actors: bool):
            self._res = Resources(cpus=0.5, workers=1, actors=actors)

        def resources(self):
            return self._res

        def setup(self):
            self.pid = os.getpid()
            self.calls = 0

        def process(self, batch):
            self.calls += 1
            return [replace(r, codec=f"{self.pid}:{self.calls}") for r in batch]

    recs = [_rec(i) for i in range(4)]
    for actors in (True, False):
        out = dict(RayExecutor(local_ray).map(Where(actors), recs))
        assert sorted(out) == [0, 1, 2, 3] and [out[i].recording_id for i in range(4)] == ["r0", "r1", "r2", "r3"]
        if actors:  # one actor, set up once: its calls count up over the recordings
            pids = {out[i].codec.split(":")[0] for i in range(4)}
            assert len(pids) == 1 and sorted(int(out[i].codec.split(":")[1]) for i in range(4)) == [1, 2, 3, 4]
    streamed = list(Runner(RayExecutor(local_ray), open_store(tmp_path)).stream(Where(False), recs, timeout=120))
    assert [r.recording_id for r in streamed] == ["r0", "r1", "r2", "r3"] and all(r.codec for r in streamed)


def test_the_fingerprint_stays_on_the_driver(tmp_path):
    class Check(Stage):
        name = "check"

        def process(self, batch):
            assert all(r.fingerprint is None for r in batch), "a worker got the fingerprint"
            return [replace(r, codec="seen") for r in batch]

    recs = [_rec(0, fingerprint=b"F" * 1000), _rec(1)]
    runner = Runner(LocalExecutor(), open_store(tmp_path))
    out = runner.apply(Check(), recs)
    assert [(r.codec, r.fingerprint) for r in out] == [("seen", b"F" * 1000), ("seen", None)]
    streamed = list(runner.stream(Check(), recs, timeout=10))
    assert [(r.codec, r.fingerprint) for r in streamed] == [("seen", b"F" * 1000), ("seen", None)]
