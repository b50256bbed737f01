"""A release read by a trainer's own loader (webdataset.WebDataset), locally and from S3: same keys,
texts and audio samples as our reader gives."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

from corpus.release import Release
from training.toolkits import webdataset_urls
from training_helpers import RELEASE, local_store_with_release, s3_store_with_release


def _ours(store, split, domain=None):
    """Our reader's samples (sha256 checked): key -> (audio, text)."""
    release = Release.open(store, RELEASE)
    return {s.key: (s.audio, s.meta["text"]) for s in release.samples(split=split, domain=domain)}


def _theirs(urls):
    ds = (wds.WebDataset(urls, shardshuffle=False, empty_check=False)
          .map_dict(flac=lambda b: sf.read(io.BytesIO(b), dtype="float32")[0], json=json.loads)
          .to_tuple("__key__", "flac", "json"))
    return {key: (audio, meta["text"]) for key, audio, meta in ds}


def _assert_same(ours, theirs):
    assert ours and sorted(theirs) == sorted(ours)
    for key, (audio, text) in ours.items():
        their_audio, their_text = theirs[key]
        assert their_text == text and text
        assert their_audio.dtype == np.float32 and np.array_equal(their_audio, audio)


def test_webdataset_reads_a_local_release_as_ours_does(tmp_path_factory):
    store = local_store_with_release(tmp_path_factory)
    urls = webdataset_urls(str(store.root), RELEASE, split="validation")
    assert urls and all(u.endswith(".tar") and not u.startswith("pipe:") for u in urls)
    _assert_same(_ours(store, "validation"), _theirs(urls))


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_webdataset_reads_a_release_on_s3_through_pipe_urls(s3_endpoint, tmp_path_factory):
    store, uri = s3_store_with_release(s3_endpoint, tmp_path_factory)
    urls = webdataset_urls(uri, RELEASE, split="test", domain="phone", endpoint_url=s3_endpoint)
    assert urls and all(u.startswith("pipe:") and "s3://" in u for u in urls)
    _assert_same(_ours(store, "test", "phone"), _theirs(urls))
