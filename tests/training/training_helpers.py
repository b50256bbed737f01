"""Shared test data for tests/training: one gen-audio folder and releases built from it, made once.

The test modules call these from their own fixtures; everything is cached under pytest's base
temp folder (a marker file says a step finished), so the audio is generated once per session.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import boto3

from corpus.release import Release
from corpus.store import open_store

MINUTES, SEED = 8, 3
RELEASE = "gen8"
SHARD_BYTES = 200_000

# A model small enough for hundreds of CPU steps within a test.
TINY_MODEL = {"d_model": 64, "num_layers": 2, "num_heads": 4, "ffn_dim": 128, "subsample_channels": 16,
              "conv_kernel": 15, "dropout": 0.1}


def gen_audio_dir(tmp_path_factory) -> Path:
    from reference.gen_audio import generate

    folder = tmp_path_factory.getbasetemp() / "training-gen-audio"
    if not (folder / ".done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        generate(folder, minutes=MINUTES, seed=SEED)
        (folder / ".done").touch()
    return folder


def local_store_with_release(tmp_path_factory):
    """A local store holding release ``gen8`` (every split in every domain, ~200 kB shards)."""
    from reference.releases import build_gen_release

    root = tmp_path_factory.getbasetemp() / "training-store"
    store = open_store(root)
    if not store.exists(f"releases/{RELEASE}/RELEASE.json"):
        build_gen_release(gen_audio_dir(tmp_path_factory), store, RELEASE, max_shard_bytes=SHARD_BYTES)
    return store


def copy_release(src_store, dst_store, name: str = RELEASE) -> Release:
    """Copy a committed release object by object (RELEASE.json last)."""
    keys = src_store.list(f"releases/{name}")
    for key in sorted(keys, key=lambda k: k.endswith("RELEASE.json")):
        dst_store.put_bytes(key, src_store.get_bytes(key))
    return Release.open(dst_store, name)


def s3_store_with_release(endpoint: str, tmp_path_factory):
    """A fresh bucket on the moto endpoint with release ``gen8`` copied in."""
    bucket = f"train-{hashlib.sha256(str(tmp_path_factory.getbasetemp()).encode()).hexdigest()[:16]}"  # one per session
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    uri = f"s3://{bucket}/corpus"
    store = open_store(uri, endpoint_url=endpoint)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)
    if not store.exists(f"releases/{RELEASE}/RELEASE.json"):
        copy_release(local_store_with_release(tmp_path_factory), store)
    return store, uri


def train_keys(store, name: str = RELEASE) -> list[str]:
    release = Release.open(store, name)
    return sorted(r["segment_id"] for r in release.manifest().to_pylist() if r["split"] == "train")


def base_config(store_uri: str, run: str, **overrides) -> dict:
    config = {"store": store_uri, "release": RELEASE, "run": run, "model": dict(TINY_MODEL), "batch_seconds": 10.0,
              "shuffle_buffer": 8, "num_workers": 0, "eval_max_samples": 6, "log_every": 5, "eval_every": 1000,
              "checkpoint_every": 1000, "warmup_steps": 20, "lr": 3e-3, "threads": 1}
    config.update(overrides)
    return config
