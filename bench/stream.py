"""Loader speed: our streaming dataset from S3 and from a local dir, against plain webdataset.

Makes a release from gen-audio output (--minutes of 4-domain speech, shards of --shard-kb),
puts a copy on an S3 endpoint (moto's server, started here on 127.0.0.1), then reads every
training sample --passes times, in --repeats rounds of alternating order, with each of:

  ours S3      training.dataset.StreamingDataset (--passes epochs, uniform mix, dynamic
               batches), shards streamed from S3, sha256 checked before use
  ours local   the same over the local directory
  webdataset   webdataset.WebDataset over the same local tar files (what a user would
               otherwise write): no checksum, no curriculum, fixed-size batches

All three decode the FLAC with soundfile, compute the same log-mel features
(training.features.LogMel) and pad them into batches of about --batch-seconds of audio, in
--workers DataLoader worker processes (default 1, as in training; it also leaves the moto
server, which runs in this process, its own core, the way a real S3 endpoint is not on the
loader's CPU). DataLoader workers start from a fork server, as in training. Prints samples/s
and audio seconds/s (medians), and the ratios ours S3 / ours local (goal >= 0.95: the next
shard downloads on a helper thread while the current one is decoded, so S3 should cost almost
nothing over local disk) and ours local / webdataset (goal >= 1).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_EC2_METADATA_DISABLED": "true"})
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)

RELEASE = "bench"


def make_release(work: Path, minutes: float, shard_kb: int):
    from reference.gen_audio import generate
    from corpus.store import open_store
    from reference.releases import build_gen_release

    store = open_store(work / "store")
    if not store.exists(f"releases/{RELEASE}/RELEASE.json"):
        if not (work / "audio" / "truth.jsonl").exists():
            print(f"generating {minutes:g} min of gen-audio ...", flush=True)
            generate(work / "audio", minutes=minutes, seed=1)
        build_gen_release(work / "audio", store, RELEASE, max_shard_bytes=shard_kb * 1024)
    return store


def start_s3(local_store):
    import boto3
    from moto.server import ThreadedMotoServer

    from corpus.store import open_store

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench-stream")
    s3 = open_store("s3://bench-stream/corpus", endpoint_url=endpoint)
    keys = local_store.list(f"releases/{RELEASE}")
    for key in sorted(keys, key=lambda k: k.endswith("RELEASE.json")):
        s3.put_bytes(key, local_store.get_bytes(key))
    return server, s3, endpoint


def ours(store_uri: str, endpoint: str | None, shards, schedule, vocab, batch_seconds: float, passes: int,
         workers: int):

    from training.dataset import StreamingDataset, data_loader

    dataset = StreamingDataset(store_uri=store_uri, endpoint_url=endpoint, release=RELEASE, shards=shards,
                               schedule=schedule, vocab=vocab, seed=0, batch_seconds=batch_seconds,
                               shuffle_buffer=64, passes=passes)
    return _drain(data_loader(dataset, num_workers=workers))


def _drain(loader) -> tuple[int, float, float, int, float]:
    """(samples, audio seconds, time to the first batch, samples in it, audio seconds in it)."""
    samples, seconds, start, first = 0, 0.0, time.perf_counter(), None
    for batch in loader:
        samples += len(batch["durations"])
        seconds += sum(batch["durations"])
        if first is None:
            first = (time.perf_counter() - start, samples, seconds)
    return samples, seconds, *first


def plain_webdataset(paths: list[str], vocab, batch_size: int, workers: int) -> tuple[int, float]:
    import json

    import torch
    import webdataset as wds
    from torch.utils.data import DataLoader

    from corpus.shards import decode_flac
    from training.features import LogMel, pad_features

    logmel = LogMel(80)

    def featurize(sample):
        flac, meta = sample
        audio, _ = decode_flac(flac)
        meta = json.loads(meta)
        return logmel(audio), vocab.encode(meta["text"]), meta["duration"]

    def collate(rows):
        feats, lengths = pad_features([r[0] for r in rows])
        targets = torch.tensor([i for r in rows for i in r[1]], dtype=torch.long)
        return {"feats": feats, "feat_lengths": lengths, "targets": targets, "durations": [r[2] for r in rows]}

    pipeline = (wds.WebDataset(paths, shardshuffle=False, empty_check=False, workersplitter=wds.split_by_worker)
                .to_tuple("flac", "json").map(featurize).batched(batch_size, collation_fn=collate, partial=True))
    return _drain(DataLoader(pipeline, batch_size=None, num_workers=workers))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=24.0, help="minutes of gen-audio (default 24)")
    parser.add_argument("--shard-kb", type=int, default=1024, help="shard size cap in KiB (default 1024)")
    parser.add_argument("--passes", type=int, default=4, help="times each reader reads the release per round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds, alternating order; medians reported")
    parser.add_argument("--workers", type=int, default=1,
                        help="DataLoader worker processes for every reader (default 1; 0: in the main process)")
    parser.add_argument("--batch-seconds", type=float, default=60.0, help="audio per batch of ours (default 60)")
    parser.add_argument("--workdir", default=None, help="keep audio and release here (default: a temp dir)")
    args = parser.parse_args()

    import logging

    import torch

    from corpus.release import Release
    from training.curriculum import domain_stats, resolve, uniform_curriculum
    from training.features import CharVocab

    torch.set_num_threads(1)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-stream-"))
    work.mkdir(parents=True, exist_ok=True)
    local = make_release(work, args.minutes, args.shard_kb)
    release = Release.open(local, RELEASE)
    manifest = release.manifest().to_pylist()
    shards = [r for r in release.index().to_pylist() if r["split"] == "train"]
    schedule = resolve(uniform_curriculum(), domain_stats(manifest), release=RELEASE, max_steps=1, max_hours=None)
    vocab = CharVocab.from_texts(r["text"] for r in manifest)
    n_train = sum(r["samples"] for r in shards) * args.passes
    seconds_train = sum(r["seconds"] for r in shards) * args.passes
    size = sum(r["bytes"] for r in shards)
    mean_batch = seconds_train / n_train
    print(f"release: {n_train // args.passes} training samples, {seconds_train / args.passes / 60:.1f} min of audio, "
          f"{len(shards)} shards, {size / 1e6:.1f} MB; each reader reads it {args.passes} times per round", flush=True)
    server, s3, endpoint = start_s3(local)
    paths = [str(local.root / "releases" / RELEASE / r["url"]) for r in shards]
    wds_batch = max(1, round(args.batch_seconds / mean_batch))
    readers = {
        "ours S3": lambda: ours(s3.uri, endpoint, shards, schedule, vocab, args.batch_seconds, args.passes,
                                args.workers),
        "ours local": lambda: ours(str(local.root), None, shards, schedule, vocab, args.batch_seconds, args.passes,
                                   args.workers),
        "webdataset local": lambda: plain_webdataset(paths * args.passes, vocab, wds_batch, args.workers),
    }
    times: dict[str, list[float]] = {name: [] for name in readers}
    firsts: dict[str, list[float]] = {name: [] for name in readers}
    steady: dict[str, list[float]] = {name: [] for name in readers}  # audio s/s after the first batch
    try:
        for round_ in range(args.repeats):
            order = list(readers) if round_ % 2 == 0 else list(readers)[::-1]
            line = []
            for name in order:
                start = time.perf_counter()
                samples, seconds, t_first, first_samples, first_seconds = readers[name]()
                elapsed = time.perf_counter() - start
                if samples != n_train or abs(seconds - seconds_train) > 1e-3:
                    raise RuntimeError(f"{name} read {samples} samples / {seconds:.1f} s, expected {n_train} / "
                                       f"{seconds_train:.1f} s")
                times[name].append(elapsed)
                firsts[name].append(t_first)
                steady[name].append((seconds - first_seconds) / max(elapsed - t_first, 1e-9))
                line.append(f"{name} {n_train / elapsed:6.1f} samples/s")
            print(f"round {round_ + 1}: " + "   ".join(line), flush=True)
    finally:
        server.stop()
    print()
    print(f"{'reader (FLAC decode + log-mel + batching)':<44} {'samples/s':>10} {'audio s/s':>10} "
          f"{'first batch s':>14} {'audio s/s after it':>19}")
    rates, after = {}, {}
    for name in readers:
        median = statistics.median(times[name])
        rates[name] = (n_train / median, seconds_train / median)
        after[name] = statistics.median(steady[name])
        print(f"{name:<44} {rates[name][0]:10.1f} {rates[name][1]:10.1f} {statistics.median(firsts[name]):14.2f} "
              f"{after[name]:19.1f}")
    print("whole reads (start-up included):")
    print(f"  ratio ours S3 / ours local: {rates['ours S3'][1] / rates['ours local'][1]:.2f}  (goal >= 0.95)")
    print(f"  ratio ours local / webdataset local: {rates['ours local'][1] / rates['webdataset local'][1]:.2f}  "
          "(goal >= 1)")
    print(f"  ratio ours S3 / webdataset local: {rates['ours S3'][1] / rates['webdataset local'][1]:.2f}")
    print("after the first batch (steady state, what a long training run sees):")
    print(f"  ratio ours S3 / ours local: {after['ours S3'] / after['ours local']:.2f}  (goal >= 0.95)")
    print(f"  ratio ours local / webdataset local: {after['ours local'] / after['webdataset local']:.2f}  (goal >= 1)")
    print(f"  ratio ours S3 / webdataset local: {after['ours S3'] / after['webdataset local']:.2f}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
