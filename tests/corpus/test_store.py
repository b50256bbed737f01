"""The object store over a local directory and the moto S3 endpoint: same tests, both backends."""
from __future__ import annotations

import hashlib
import os

import boto3
import pytest

from corpus.store import MIN_PART_SIZE, LocalStore, ObjectNotFound, S3Store, StoreError, open_store
from s3_faults import FaultProxy
from conftest import make_bucket


def test_put_get_list_exists_delete(store):
    written = store.put_bytes("a/b/one.bin", b"hello")
    assert written.sha256 == hashlib.sha256(b"hello").hexdigest() and written.bytes == 5
    assert written.url == store.url("a/b/one.bin")
    store.put_bytes("a/two.bin", b"x" * 10)
    store.put_bytes("c.bin", b"")
    assert store.get_bytes("a/b/one.bin") == b"hello"
    assert store.get_bytes("c.bin") == b""
    assert store.exists("a/two.bin") and not store.exists("a/missing.bin")
    assert store.size("a/two.bin") == 10
    assert store.list() == ["a/b/one.bin", "a/two.bin", "c.bin"]
    assert store.list("a") == ["a/b/one.bin", "a/two.bin"]
    assert store.list("nothing/here") == []
    sub = store.at("a")
    assert sub.list() == ["b/one.bin", "two.bin"] and sub.get_bytes("b/one.bin") == b"hello"
    store.delete("a/two.bin")
    assert not store.exists("a/two.bin")


def test_streaming_read_and_put_file(store, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    written = store.put_file("big.bin", src)
    assert written.sha256 == hashlib.sha256(data).hexdigest()
    got = bytearray()
    with store.open_read("big.bin") as reader:
        while chunk := reader.read(100_000):
            assert len(chunk) <= 100_000
            got += chunk
    assert bytes(got) == data
    assert store.sha256("big.bin") == written.sha256


def test_write_is_invisible_until_closed_and_gone_on_error(store):
    writer = store.open_write("part/data.bin")
    writer.write(b"partial")
    assert not store.exists("part/data.bin") and store.list() == []
    writer.close()
    assert store.get_bytes("part/data.bin") == b"partial"

    with pytest.raises(RuntimeError, match="boom"):
        with store.open_write("part/failed.bin") as w:
            w.write(b"half of it")
            raise RuntimeError("boom")
    assert not store.exists("part/failed.bin")
    assert store.list() == ["part/data.bin"]  # no temp file, nothing half-written


@pytest.mark.parametrize("key", ["/abs", "a/../b", "..", "a//b", "", "./a", "a\\b", ".tmp-x/y"])
def test_bad_keys_are_refused_naming_the_key(store, key):
    with pytest.raises(ValueError, match="invalid object key"):
        store.put_bytes(key, b"x")


def test_missing_object_names_its_url(store):
    with pytest.raises(ObjectNotFound, match="no object at .*nope/missing.bin"):
        store.get_bytes("nope/missing.bin")
    with pytest.raises(ObjectNotFound, match="missing.bin"):
        store.size("missing.bin")


def test_local_store_leaves_no_temp_files(tmp_path):
    store = LocalStore(tmp_path)
    with pytest.raises(KeyError):
        with store.open_write("x/y.bin") as w:
            w.write(b"data")
            raise KeyError("stop")
    assert [p.name for p in (tmp_path / "x").iterdir()] == []


def test_open_store_picks_backend(tmp_path):
    assert isinstance(open_store(tmp_path), LocalStore)
    assert isinstance(open_store(tmp_path.as_uri()), LocalStore)
    assert isinstance(open_store("s3://bucket/pre/fix", endpoint_url="http://127.0.0.1:1"), S3Store)
    with pytest.raises(ValueError, match="unsupported store URI"):
        open_store("gs://bucket/x")
    with pytest.raises(ValueError, match="part_size"):
        open_store("s3://bucket/x", endpoint_url="http://127.0.0.1:1", part_size=1024)


@pytest.mark.s3
def test_s3_multipart_streams_parts_and_appears_only_when_complete(s3_endpoint):
    bucket = make_bucket(s3_endpoint)
    store = open_store(f"s3://{bucket}/big", endpoint_url=s3_endpoint, part_size=MIN_PART_SIZE)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    data = os.urandom(2 * MIN_PART_SIZE + 123_456)
    writer = store.open_write("object.bin")
    for i in range(0, len(data), 1 << 20):
        writer.write(data[i:i + (1 << 20)])
    assert writer.parts_sent == 2, "parts go out while the writer is still being fed"
    assert not store.exists("object.bin"), "a multipart upload must not be visible before it completes"
    writer.close()
    assert writer.result.sha256 == hashlib.sha256(data).hexdigest()
    assert store.size("object.bin") == len(data) and store.sha256("object.bin") == writer.result.sha256
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    aborted = store.open_write("aborted.bin")
    aborted.write(data)
    assert aborted.parts_sent == 2
    aborted.abort()
    assert not store.exists("aborted.bin")
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.s3
def test_s3_retries_throttling_and_5xx(s3_endpoint):
    bucket = make_bucket(s3_endpoint)
    with FaultProxy(s3_endpoint) as proxy:
        store = open_store(f"s3://{bucket}/r", endpoint_url=proxy.url, max_attempts=6)
        proxy.fail_next(3, status=503, code="SlowDown")
        store.put_bytes("k.bin", b"payload")
        assert proxy.injected == 3
        proxy.fail_next(2, status=500, code="InternalError")
        assert store.get_bytes("k.bin") == b"payload"
        assert proxy.injected == 5
        impatient = open_store(f"s3://{bucket}/r", endpoint_url=proxy.url, max_attempts=2)
        proxy.fail_next(100, status=503, code="SlowDown")
        with pytest.raises(Exception, match="SlowDown|reached max retries"):
            impatient.put_bytes("never.bin", b"x")
        assert 2 <= proxy.injected - 5 <= 3, "max_attempts=2 gives up after one retry, not after 100 errors"
        proxy.fail_next(0)
        assert not store.exists("never.bin")


@pytest.mark.s3
def test_s3_read_resumes_after_connection_drops(s3_endpoint):
    bucket = make_bucket(s3_endpoint)
    data = os.urandom(2 * 1024 * 1024 + 5)
    with FaultProxy(s3_endpoint) as proxy:
        store = open_store(f"s3://{bucket}/r", endpoint_url=proxy.url)
        store.put_bytes("obj.bin", data)
        proxy.cut_next_get(700_000)
        with store.open_read("obj.bin") as reader:
            got = reader.read()
        assert proxy.cut == 1
        assert got == data


@pytest.mark.s3
def test_s3_unreachable_endpoint_is_a_clear_error():
    store = open_store("s3://bucket/x", endpoint_url="http://127.0.0.1:9", max_attempts=1)
    with pytest.raises(Exception, match="127.0.0.1:9"):
        store.put_bytes("k", b"x")
