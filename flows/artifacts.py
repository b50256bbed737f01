"""What a finished build or re-filter shows in Prefect: a datasheet table and a link to the release."""
from __future__ import annotations


def datasheet_markdown(release: str, store_uri: str, hours: dict[str, dict[str, float]], counts: dict,
                       rejects: dict[str, int], quarantine: dict[str, int] | None = None,
                       domains: list[str] | None = None) -> str:
    """Markdown datasheet; every domain in ``domains`` gets a row, even with nothing kept."""
    splits = ("train", "validation", "test")
    lines = [f"# Release `{release}`", "", f"Store: `{store_uri}`", "",
             f"{counts.get('kept', 0)} kept of {counts.get('segments', 0)} segments, "
             f"{counts.get('shards', 0)} shards, {counts.get('recordings', 0)} recordings.", "",
             "## Hours kept per domain and split", "",
             "| domain | " + " | ".join(splits) + " | total |", "|---|" + "---:|" * (len(splits) + 1)]
    for domain in sorted(set(hours) | set(domains or ())):
        cells = [hours.get(domain, {}).get(s, 0.0) for s in splits]
        lines.append(f"| {domain} | " + " | ".join(f"{c:.3f}" for c in cells) + f" | {sum(cells):.3f} |")
    lines += ["", "## Rejected segments by reason", "", "| reason | segments |", "|---|---:|"]
    lines += [f"| {reason} | {n} |" for reason, n in sorted(rejects.items())] or ["| (none) | 0 |"]
    if quarantine is not None:
        lines += ["", "## Quarantined files by reason", "", "| reason | files |", "|---|---:|"]
        lines += [f"| {reason} | {n} |" for reason, n in sorted(quarantine.items())] or ["| (none) | 0 |"]
    return "\n".join(lines) + "\n"


def artifact_key(release: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes."""
    return "release-" + "".join(c if c.isalnum() else "-" for c in release.lower())
