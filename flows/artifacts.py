"""What a finished build, re-filter or training run shows in Prefect.

No renderer of its own: the artifact is the document ``presentation`` wrote beside the data (a
release's datasheet, a run's report), read back with its image links turned into the store's
URLs (``presentation.document.document_markdown``), so Prefect, the store and the CLI show the
same page.
"""
from __future__ import annotations

from corpus.store import Store
from presentation.datasheet import MD_FILE
from presentation.document import document_markdown
from presentation.training_report import REPORT_FILE


def artifact_key(release: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return "release-" + "".join(c if c.isalnum() else "-" for c in release.lower())


def release_datasheet(store: Store, release: str) -> str:
    """The datasheet written into the release (``presentation.datasheet``)."""
    return document_markdown(store, f"releases/{release}/{MD_FILE}")


def run_report(run: Store) -> str:
    """The report written into a training run's folder (``presentation.training_report``)."""
    return document_markdown(run, REPORT_FILE)


__all__ = ["artifact_key", "release_datasheet", "run_report", "document_markdown"]
