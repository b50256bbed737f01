"""One small object-store interface over a local directory and ``s3://bucket/prefix``.

Every write is atomic: a reader sees either nothing or the whole object. On a local directory
the bytes go to a hidden temporary file in the target's folder and are renamed into place; on
S3 a small object is one ``PutObject`` and a large one a multipart upload (parts sent while the
writer is still being fed), which S3 makes visible only at ``CompleteMultipartUpload``; a writer
left by an exception is discarded (temp file removed, multipart upload aborted). Every write
returns the sha256 and size of what was written.

S3 calls retry with backoff on throttling and 5xx through botocore's ``adaptive`` retry mode;
a streaming read that breaks mid-body resumes from its offset with a ranged GET of the same
ETag. The endpoint comes from ``endpoint_url=`` or ``AWS_ENDPOINT_URL`` (MinIO, moto).
"""
from __future__ import annotations

import hashlib
import io
import os
import queue
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

TMP_PREFIX = ".tmp-"
DEFAULT_PART_SIZE = 16 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
READ_CHUNK = 1024 * 1024


class StoreError(RuntimeError):
    """A store operation failed; the message names the object."""


class ObjectNotFound(StoreError, FileNotFoundError):
    """No object at that key."""


class ObjectUnreadable(StoreError):
    """The object exists but may not be read (permission denied, 403, not a regular file): an
    error of access, not of content."""


@dataclass(frozen=True)
class Written:
    """What a completed write put in the store."""

    key: str
    url: str
    bytes: int
    sha256: str


MAX_KEY_BYTES = 1024  # S3's limit on a key's UTF-8 length; kept for local stores too


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot name an object in a store (None: it can). Checked before anything is written."""
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not valid UTF-8"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        where = "ends with" if key[-1] in "\r\n" else "contains"
        return f"the name {where} a control character (newline, tab, …)"
    if len(encoded) > MAX_KEY_BYTES:
        return f"the name is {len(encoded)} bytes long, over the {MAX_KEY_BYTES}-byte limit of object keys"
    return None


def printable_name(name: str) -> str:
    """A name as valid UTF-8 text (bytes that are not UTF-8 shown as \\xNN), for rows and messages."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def validate_object_key(key: str) -> str:
    """A relative object key: '/'-separated, no empty, '.' or '..' parts, no backslash or NUL,
    valid UTF-8, no control characters, at most 1024 bytes."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"invalid object key {key!r}: empty")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid object key {key!r}: must be relative, without backslashes or NUL")
    problem = key_problem(key)
    if problem:
        raise ValueError(f"invalid object key {printable_name(key)!r}: {problem}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"invalid object key {key!r}: empty, '.' or '..' path component")
        if part.startswith(TMP_PREFIX):
            raise ValueError(f"invalid object key {key!r}: '{TMP_PREFIX}' names are reserved for writes in progress")
    return key


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# characters of an s3:// store prefix and a local store path: S3's "safe" set plus '=', '+', ',',
# '@', '~', ':' and (locally) space. Everything a shell would interpret is refused.
_SAFE_PREFIX_RE = re.compile(r"^[A-Za-z0-9._/=+,@~:-]*$")
_SAFE_PATH_RE = re.compile(r"^[A-Za-z0-9._/=+,@~: -]+$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$")


def validate_store_uri(uri: str) -> str:
    """A store URI as strict as the CLI needs: ``s3://bucket/prefix`` with a valid bucket name and
    safe prefix characters, or a local path / ``file://`` URI without shell or control characters."""
    if not isinstance(uri, str) or not uri:
        raise ValueError(f"invalid store URI {uri!r}: empty")
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise ValueError(f"invalid store URI {uri!r}: {bucket!r} is not a valid S3 bucket name")
        prefix = prefix.strip("/")
        if not _SAFE_PREFIX_RE.match(prefix):
            raise ValueError(f"invalid store URI {uri!r}: the prefix may use letters, digits and . _ / = + , @ ~ : - "
                             "only")
        if prefix:
            validate_object_key(prefix)
        return uri
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" in path:
        raise ValueError(f"unsupported store URI {uri!r}: use a local path, file:// or s3://bucket/prefix")
    if not _SAFE_PATH_RE.match(path):
        raise ValueError(f"invalid store path {uri!r}: letters, digits, space and . _ / = + , @ ~ : - only")
    return uri


def validate_endpoint_url(url: str | None) -> str | None:
    """An S3 endpoint: ``http(s)://host[:port]`` and nothing else (no user info, path or query)."""
    if url is None:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise ValueError(f"invalid endpoint URL {url!r}: {err}") from None
    host = parts.netloc.rsplit(":", 1)[0] if port is not None else parts.netloc
    if (parts.scheme not in ("http", "https") or not host or not _HOST_RE.match(host) or parts.username
            or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment):
        raise ValueError(f"invalid endpoint URL {url!r}: use http(s)://host[:port]")
    return url


def _join(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


class _BackgroundSha256:
    """sha256 computed on a helper thread once data gets large, overlapping the writes.

    hashlib releases the GIL on large buffers, so on a second core hashing costs no wall time.
    Updates stay in order: once the thread starts, every update goes through its queue.
    """

    THREAD_AFTER = 1 << 20
    BATCH = 4 << 20

    def __init__(self):
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._sha = hashlib.sha256()
        self._seen = 0
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def update(self, data) -> None:
        self._seen += len(data)
        if self._queue is None and self._seen < self.THREAD_AFTER:
            self._sha.update(data)
            return
        if self._queue is None:
            self._queue = queue.Queue(maxsize=16)
            self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
            self._thread.start()
        self._batch.append(data if isinstance(data, bytes) else bytes(data))
        self._batch_bytes += len(data)
        if self._batch_bytes >= self.BATCH:  # few hand-offs: each costs a GIL round trip
            self._queue.put(self._batch)
            self._batch, self._batch_bytes = [], 0

    def _run(self) -> None:
        while (batch := self._queue.get()) is not None:
            self._sha.update(b"".join(batch))  # one GIL release for the whole batch

    def hexdigest(self) -> str:
        if self._thread is not None:
            if self._batch:
                self._queue.put(self._batch)
                self._batch, self._batch_bytes = [], 0
            self._queue.put(None)
            self._thread.join()
            self._thread = self._queue = None
        return self._sha.hexdigest()


class _HashingWriter(io.RawIOBase):
    """Base of the store writers: counts and hashes every byte, commits on clean close."""

    def __init__(self, store: "Store", key: str):
        self._store, self.key = store, key
        self._sha = _BackgroundSha256()
        self._bytes = 0
        self.result: Written | None = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        self._sha.update(data if isinstance(data, bytes) else view)
        self._bytes += len(view)
        self._write(view)
        return len(view)

    def _write(self, view: memoryview) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Throw away everything written; nothing becomes visible."""
        if not self.closed:
            try:
                self._discard()
            finally:
                self._sha.hexdigest()  # stops the hashing thread
                super().close()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._commit()
        except BaseException:
            self.abort()
            raise
        self.result = Written(self.key, self._store.url(self.key), self._bytes, self._sha.hexdigest())
        super().close()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        else:
            self.close()
        return False


@dataclass(frozen=True)
class ObjectInfo:
    """A listed object: its key, size and version (mtime in ns locally, the ETag on S3).

    ``kind`` is "file" for every object unless a local listing is asked for special entries
    (``list_info(..., special=True)``): then also "directory", "fifo", "socket", "device",
    "broken_symlink", "symlink_loop" or "unreadable" (size 0, version "")."""

    key: str
    size: int
    version: str
    kind: str = "file"


class Store:
    """Interface shared by :class:`LocalStore` and :class:`S3Store`. Keys are relative."""

    uri: str

    def at(self, prefix: str) -> "Store":
        """The same store seen from a sub-prefix (``store.at("releases/v1")``)."""
        raise NotImplementedError

    def url(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{validate_object_key(key)}"

    def open_write(self, key: str) -> _HashingWriter:
        """A binary writer; the object appears only when it is closed without error."""
        raise NotImplementedError

    def open_read(self, key: str) -> BinaryIO:
        """A streaming binary reader over the object (raises ObjectNotFound)."""
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def size(self, key: str) -> int:
        raise NotImplementedError

    def list_info(self, prefix: str = "", *, special: bool = False) -> list[ObjectInfo]:
        """Objects under ``prefix`` (a folder-like prefix; '' for all), sorted by key. ``special``:
        also entries that are not regular files (local stores only; see :class:`ObjectInfo`)."""
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted."""
        return [info.key for info in self.list_info(prefix)]

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def probe(self) -> None:
        """Raise StoreError naming the store if it cannot be reached or used; quick (no long retries)."""
        raise NotImplementedError

    def put_bytes(self, key: str, data: bytes) -> Written:
        with self.open_write(key) as w:
            w.write(data)
        return w.result

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """Create the object only if no object has that key (atomic: of two writers, one wins).
        True if these bytes were written, False if an object was already there."""
        raise NotImplementedError

    def list_incomplete(self, prefix: str = "") -> list[str]:
        """Writes in progress or abandoned under ``prefix``: temp files locally, multipart uploads
        on S3 (a writer killed mid-write leaves them; they are never visible as objects)."""
        raise NotImplementedError

    def discard_incomplete(self, prefix: str = "") -> int:
        """Remove what :meth:`list_incomplete` lists; only for a caller that owns the prefix."""
        raise NotImplementedError

    def put_file(self, key: str, path: str | os.PathLike) -> Written:
        with open(path, "rb") as src, self.open_write(key) as w:
            while chunk := src.read(READ_CHUNK * 8):
                w.write(chunk)
        return w.result

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as r:
            return r.read()

    def sha256(self, key: str) -> str:
        """sha256 of the object's bytes, streamed."""
        sha = hashlib.sha256()
        with self.open_read(key) as r:
            while chunk := r.read(READ_CHUNK * 8):
                sha.update(chunk)
        return sha.hexdigest()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


# --------------------------------------------------------------------------- local directory


class _LocalWriter(_HashingWriter):
    def __init__(self, store: "LocalStore", key: str):
        super().__init__(store, key)
        self._final = store._path(key)
        self._final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self._final.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{self._final.name}")
        self._fh = open(self._tmp, "wb", buffering=0)  # callers write large records; no extra copy

    def _write(self, view: memoryview) -> None:
        while view:  # an unbuffered write may take only part of the bytes
            view = view[self._fh.write(view):]

    def _commit(self) -> None:
        self._fh.close()
        os.replace(self._tmp, self._final)

    def _discard(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()

    def at(self, prefix: str) -> "LocalStore":
        return LocalStore(self._path(prefix))

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_object_key(key).split("/"))

    def open_write(self, key: str) -> _LocalWriter:
        return _LocalWriter(self, key)

    def open_read(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object at {self.url(key)}") from None
        except PermissionError:
            raise ObjectUnreadable(f"permission denied reading {self.url(key)}") from None
        except OSError as err:
            raise ObjectUnreadable(f"cannot open {self.url(key)}: {err.strerror or err}") from None
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ObjectUnreadable(f"{self.url(key)} is not a regular file")
        os.set_blocking(fd, True)
        return open(fd, "rb", buffering=READ_CHUNK)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(f"no object at {self.url(key)}") from None

    def list_info(self, prefix: str = "", *, special: bool = False) -> list[ObjectInfo]:
        """Regular files (symlinks to them included); with ``special``, every other entry too,
        each with its kind. Never follows a symlink into a loop, never opens anything."""
        import errno
        import stat

        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        infos = []

        def add(path: Path, kind: str, st=None) -> None:
            key = path.relative_to(self.root).as_posix()
            if kind == "file":
                infos.append(ObjectInfo(key, st.st_size, str(st.st_mtime_ns)))
            elif special:
                infos.append(ObjectInfo(key, 0, "", kind))

        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(TMP_PREFIX)]
            if special:  # symlinks to directories are listed here too (os.walk does not follow them)
                for name in dirnames:
                    add(Path(dirpath, name), "directory")
            for name in filenames:
                if name.startswith(TMP_PREFIX):
                    continue
                path = Path(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError as err:
                    add(path, "symlink_loop" if err.errno == errno.ELOOP else
                        "broken_symlink" if err.errno == errno.ENOENT else "unreadable")
                    continue
                mode = st.st_mode
                kind = ("file" if stat.S_ISREG(mode) else "directory" if stat.S_ISDIR(mode) else
                        "fifo" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else
                        "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special")
                add(path, kind, st)
        return sorted(infos, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        final = self._path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{final.name}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, final)  # fails if the name exists: the whole file appears, or nothing
            except FileExistsError:
                return False
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _tmp_files(self, prefix: str) -> list[Path]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            found += [Path(dirpath, n) for n in dirnames + filenames if n.startswith(TMP_PREFIX)]
            dirnames[:] = [d for d in dirnames if not d.startswith(TMP_PREFIX)]
        return sorted(found)

    def list_incomplete(self, prefix: str = "") -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self._tmp_files(prefix)]

    def discard_incomplete(self, prefix: str = "") -> int:
        import shutil

        paths = self._tmp_files(prefix)
        for path in paths:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        return len(paths)

    def probe(self) -> None:
        existing = next((p for p in (self.root, *self.root.parents) if p.exists()), None)
        if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
            raise StoreError(f"store {self.uri} is not usable: {existing} is not a writable directory")


# --------------------------------------------------------------------------- S3


def _s3_client(endpoint_url: str | None, max_attempts: int):
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"mode": "adaptive", "max_attempts": max_attempts},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=32,
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
    client.meta.events.register("needs-retry.s3", _retry_forbidden)
    return client


FORBIDDEN_RETRIES = 3


def _retry_forbidden(response=None, attempts=None, caught_exception=None, **_):
    """botocore never retries a 403; S3 answers one transiently too (credentials being rotated,
    IAM changes propagating). Retry it a few times with backoff; one that persists is an access
    error (a file read is then deferred, never quarantined)."""
    if response is None or caught_exception is not None or attempts is None:
        return None
    if response[0].status_code == 403 and attempts <= FORBIDDEN_RETRIES:
        return min(0.1 * 2 ** attempts, 2.0)
    return None


def _is_not_found(err) -> bool:
    code = str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class _S3Writer(_HashingWriter):
    """Sends a part as soon as ``part_size`` bytes are buffered; one PutObject if it never fills."""

    def __init__(self, store: "S3Store", key: str):
        super().__init__(store, key)
        self._s3, self._bucket, self._okey = store._client, store.bucket, store._okey(key)
        self._part_size = store.part_size
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict] = []

    def _write(self, view: memoryview) -> None:
        self._buf += view
        while len(self._buf) >= self._part_size:
            self._send_part(bytes(self._buf[: self._part_size]))
            del self._buf[: self._part_size]

    def _send_part(self, body: bytes) -> None:
        if self._upload_id is None:
            self._upload_id = self._s3.create_multipart_upload(Bucket=self._bucket, Key=self._okey)["UploadId"]
        number = len(self._parts) + 1
        etag = self._s3.upload_part(Bucket=self._bucket, Key=self._okey, UploadId=self._upload_id,
                                    PartNumber=number, Body=body)["ETag"]
        self._parts.append({"PartNumber": number, "ETag": etag})

    def _commit(self) -> None:
        if self._upload_id is None:
            self._s3.put_object(Bucket=self._bucket, Key=self._okey, Body=bytes(self._buf))
        else:
            if self._buf:
                self._send_part(bytes(self._buf))
            self._s3.complete_multipart_upload(Bucket=self._bucket, Key=self._okey, UploadId=self._upload_id,
                                               MultipartUpload={"Parts": self._parts})
        self._buf = bytearray()

    def _discard(self) -> None:
        self._buf = bytearray()
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._okey, UploadId=self._upload_id)
            self._upload_id = None

    @property
    def parts_sent(self) -> int:
        return len(self._parts)


class _S3Reader(io.RawIOBase):
    """Streams an object's body; a connection that breaks mid-body resumes with a ranged GET."""

    def __init__(self, store: "S3Store", key: str, max_resumes: int = 5):
        from botocore.exceptions import ClientError

        self._store, self._key, self._max_resumes = store, key, max_resumes
        self._s3, self._bucket, self._okey = store._client, store.bucket, store._okey(key)
        self._pos = 0
        self._resumes = 0
        try:
            resp = self._s3.get_object(Bucket=self._bucket, Key=self._okey)
        except ClientError as err:
            if _is_not_found(err):
                raise ObjectNotFound(f"no object at {store.url(key)}") from None
            if str(err.response.get("Error", {}).get("Code")) in ("403", "AccessDenied", "Forbidden"):
                raise ObjectUnreadable(f"access denied reading {store.url(key)}: {err}") from err
            raise StoreError(f"reading {store.url(key)}: {err}") from err
        self._etag = resp["ETag"]
        self.length = resp["ContentLength"]
        self._body = resp["Body"]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        from botocore.exceptions import HTTPClientError, IncompleteReadError
        from urllib3.exceptions import HTTPError as Urllib3Error

        if self._pos >= self.length:
            return 0
        view = memoryview(buffer).cast("B")
        while True:
            try:
                data = self._body.read(len(view))
            except (HTTPClientError, IncompleteReadError, Urllib3Error, ConnectionError) as err:
                self._reopen(err)
                continue
            if not data and self._pos < self.length:
                self._reopen(StoreError("connection closed early"))
                continue
            n = len(data)
            view[:n] = data
            self._pos += n
            return n

    def _reopen(self, err: Exception) -> None:
        self._resumes += 1
        if self._resumes > self._max_resumes:
            raise StoreError(f"reading {self._store.url(self._key)} failed at byte {self._pos} "
                             f"after {self._max_resumes} resumes: {err}") from err
        resp = self._s3.get_object(Bucket=self._bucket, Key=self._okey, Range=f"bytes={self._pos}-",
                                   IfMatch=self._etag)
        self._body = resp["Body"]

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Store(Store):
    def __init__(self, uri: str, *, endpoint_url: str | None = None, part_size: int = DEFAULT_PART_SIZE,
                 max_attempts: int = 8, client=None):
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"s3 URI without a bucket: {uri!r}")
        prefix = prefix.strip("/")
        if prefix:
            validate_object_key(prefix)
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum), got {part_size}")
        self.bucket, self.prefix, self.part_size = bucket, prefix, part_size
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._max_attempts = max_attempts
        self._client = client or _s3_client(self.endpoint_url, max_attempts)

    def at(self, prefix: str) -> "S3Store":
        return S3Store(f"s3://{self.bucket}/{self._okey(prefix)}", endpoint_url=self.endpoint_url,
                       part_size=self.part_size, max_attempts=self._max_attempts, client=self._client)

    def _okey(self, key: str) -> str:
        return _join(self.prefix, validate_object_key(key))

    def open_write(self, key: str) -> _S3Writer:
        return _S3Writer(self, key)

    def open_read(self, key: str) -> BinaryIO:
        return io.BufferedReader(_S3Reader(self, key), buffer_size=READ_CHUNK)

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self._client.head_object(Bucket=self.bucket, Key=self._okey(key))
        except ClientError as err:
            if _is_not_found(err):
                return None
            raise StoreError(f"head {self.url(key)}: {err}") from err

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise ObjectNotFound(f"no object at {self.url(key)}")
        return head["ContentLength"]

    def list_info(self, prefix: str = "", *, special: bool = False) -> list[ObjectInfo]:
        full = _join(self.prefix, validate_object_key(prefix.rstrip("/"))) if prefix else self.prefix
        query = f"{full}/" if full else ""
        infos: list[ObjectInfo] = []
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=query):
            for obj in page.get("Contents", ()):
                rel = obj["Key"][len(self.prefix) + 1:] if self.prefix else obj["Key"]
                infos.append(ObjectInfo(rel, obj["Size"], obj["ETag"].strip('"')))
        return sorted(infos, key=lambda info: info.key)

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._okey(key))

    def put_bytes_if_absent(self, key: str, data: bytes) -> bool:
        """``PutObject`` with ``If-None-Match: *``. A retried request whose first attempt did land
        answers 412 too, so on 412 the object is read back: our own bytes mean we wrote it."""
        from botocore.exceptions import ClientError

        try:
            self._client.put_object(Bucket=self.bucket, Key=self._okey(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = err.response.get("Error", {}).get("Code")
            if status not in (409, 412) and code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise StoreError(f"conditional write of {self.url(key)}: {err}") from err
        try:
            return self.get_bytes(key) == data
        except ObjectNotFound:  # 409: a concurrent conditional write that did not complete
            return False

    def _uploads(self, prefix: str) -> list[tuple[str, str]]:
        full = _join(self.prefix, validate_object_key(prefix.rstrip("/"))) if prefix else self.prefix
        query = f"{full}/" if full else ""
        found = []
        for page in self._client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=query):
            found += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", ())]
        return sorted(found)

    def list_incomplete(self, prefix: str = "") -> list[str]:
        start = len(self.prefix) + 1 if self.prefix else 0
        return [f"{key[start:]} (multipart upload {upload_id[:12]}…)" for key, upload_id in self._uploads(prefix)]

    def discard_incomplete(self, prefix: str = "") -> int:
        uploads = self._uploads(prefix)
        for key, upload_id in uploads:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        return len(uploads)

    def probe(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        quick = _s3_client(self.endpoint_url, max_attempts=2)
        try:
            quick.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as err:
            where = f" at {self.endpoint_url}" if self.endpoint_url else ""
            raise StoreError(f"store {self.uri}{where} is unreachable: {err}") from err


def open_store(uri: str | os.PathLike, *, endpoint_url: str | None = None, **s3_options) -> Store:
    """``s3://bucket/prefix`` → :class:`S3Store`; a path or ``file://`` URI → :class:`LocalStore`."""
    text = os.fspath(uri)
    if text.startswith("s3://"):
        return S3Store(text, endpoint_url=endpoint_url, **s3_options)
    if text.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return LocalStore(unquote(urlparse(text).path))
    if "://" in text:
        raise ValueError(f"unsupported store URI {text!r}: use a local path, file:// or s3://bucket/prefix")
    return LocalStore(text)


def iter_chunks(reader: BinaryIO, size: int = READ_CHUNK) -> Iterator[bytes]:
    while chunk := reader.read(size):
        yield chunk
