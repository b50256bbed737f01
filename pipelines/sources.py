"""Listing raw audio under each source (a local folder or an s3:// prefix).

Nothing listed is lost: an entry with an audio extension that cannot be read as a file (a
FIFO, a device, a socket, a directory named ``x.wav``, a broken symlink or a symlink loop) or
whose name cannot be an object key (not UTF-8, a control character such as a trailing newline,
over 1024 bytes) is still listed, with ``problem`` set; ingest turns it into a quarantine row
without ever opening it.
"""
from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import asdict, dataclass

from corpus.store import key_problem, open_store, printable_name

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm",
                              ".wma", ".aif", ".aiff", ".mp4"})


@dataclass(frozen=True)
class SourceFile:
    """One raw file to ingest. ``file_key`` changes when the file's uri, size or version does."""

    source_uri: str      # the source folder / prefix it was listed under
    key: str             # path relative to the source
    uri: str             # full uri of the file
    size: int
    version: str         # mtime_ns (local) or ETag (S3)
    domain: str
    language: str
    licence: str
    problem: str | None = None   # "special_file" / "bad_name": quarantined without being read
    detail: str | None = None

    @property
    def file_key(self) -> str:
        return hashlib.sha256(f"{self.uri}\0{self.size}\0{self.version}".encode()).hexdigest()[:20]

    def to_dict(self) -> dict:
        return {**asdict(self), "file_key": self.file_key}


def list_sources(sources, *, endpoint_url: str | None = None) -> tuple[list[SourceFile], list[str]]:
    """Audio files (by extension) under every source, sorted by uri, and the uris of other files."""
    files, ignored = [], []
    for source in sources:
        store = open_store(source.uri, endpoint_url=endpoint_url)
        infos = store.list_info(special=True)
        if not infos and not _source_exists(store):
            raise FileNotFoundError(f"source {source.uri} (domain {source.domain}) does not exist or is unreadable")
        include = getattr(source, "include", "*")
        for info in infos:
            if not fnmatch.fnmatchcase(info.key, include):
                continue
            stem = info.key.rstrip()  # "x.wav\n" is an audio file with a bad name, not a non-audio file
            ext = "." + stem.rsplit(".", 1)[-1].lower() if "." in stem.rsplit("/", 1)[-1] else ""
            name_problem = key_problem(info.key)
            key = _escaped(info.key) if name_problem else info.key
            uri = f"{store.uri.rstrip('/')}/{key}"
            if ext not in AUDIO_EXTENSIONS:
                if info.kind == "file":
                    ignored.append(uri)
                continue
            problem = detail = None
            if name_problem:
                problem, detail = "bad_name", f"{name_problem}: refused, never read or written"
            elif info.kind != "file":
                problem, detail = "special_file", f"not a regular file: {info.kind.replace('_', ' ')}"
            files.append(SourceFile(source_uri=store.uri, key=key, uri=uri, size=info.size, version=info.version,
                                    domain=source.domain, language=source.language, licence=source.licence,
                                    problem=problem, detail=detail))
    return sorted(files, key=lambda f: f.uri), sorted(ignored)


def _source_exists(store) -> bool:
    root = getattr(store, "root", None)
    if root is not None:
        return root.is_dir()
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        store._client.head_bucket(Bucket=store.bucket)
        return True
    except (BotoCoreError, ClientError) as err:
        raise FileNotFoundError(f"source {store.uri} is unreachable: {err}") from err


def _escaped(key: str) -> str:
    """A bad name as printable UTF-8: undecodable bytes as \\xNN, control characters escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in printable_name(key))


def seen_by_latest_release(store) -> set[str]:
    """``file_key`` of every file the newest built release in ``store`` read (labelled or quarantined).

    A deferred file (it could not be read) is not seen yet: listed again, it counts as new audio."""
    import io
    import json

    import pyarrow.parquet as pq

    latest, created = None, ""
    for key in store.list("releases"):
        if key.endswith("/RELEASE.json"):
            info = json.loads(store.get_bytes(key))
            if info.get("created", "") >= created and store.exists(key.replace("RELEASE.json", "recordings.parquet")):
                latest, created = key.rsplit("/", 1)[0], info.get("created", "")
    if latest is None:
        return set()
    keys = set()
    for name in ("recordings.parquet", "quarantine.parquet"):
        table = pq.read_table(io.BytesIO(store.get_bytes(f"{latest}/{name}")))
        if "file_key" in table.column_names:
            statuses = table.column("status").to_pylist() if "status" in table.column_names else [None] * len(table)
            keys.update(k for k, s in zip(table.column("file_key").to_pylist(), statuses) if s != "deferred")
    return keys
