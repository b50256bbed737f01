"""What a finished build, re-filter or training run shows in Prefect.

No renderer of its own: the artifact is the document the pipeline already wrote beside the data
(a release's ``datasheet.md``, a run's ``report.md``), with its relative image links turned into
the store's URLs, so Prefect, the store and the CLI show the same page.
"""
from __future__ import annotations

import re

from corpus.store import Store

_RELATIVE_IMAGE = re.compile(r"(!\[[^\]]*\]\()(?![a-z][a-z0-9+.-]*://|/)([^)\s]+)\)")


def artifact_key(release: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return "release-" + "".join(c if c.isalnum() else "-" for c in release.lower())


def document_markdown(store: Store, key: str) -> str:
    """The markdown document at ``key`` with image links made absolute (``store.url`` of each)."""
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    text = store.get_bytes(key).decode("utf-8")
    return _RELATIVE_IMAGE.sub(lambda m: f"{m.group(1)}{store.url(folder + m.group(2))})", text)


def release_datasheet(store: Store, release: str) -> str:
    """The datasheet a build or re-filter wrote into its release (``corpus.datasheet``)."""
    return document_markdown(store, f"releases/{release}/datasheet.md")
