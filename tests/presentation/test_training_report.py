"""The training report: rendered from a real run's summary.json and metrics.parquet, after the run.

The training loop writes its metrics and summary and renders nothing; ``stt-corpus train`` (and
the ``train`` flow) write the report after it.
"""
from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from corpus.store import open_store
from presentation.document import to_html, to_markdown
from presentation.training_report import PLOTS, REPORT_FILE, render_report, write_report
from training import train
from training.cli import main as cli_main
from training.rundir import RunDir, run_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))  # the training tests' shared release
from training_helpers import RELEASE, TINY_MODEL, base_config, local_store_with_release  # noqa: E402

STEPS = 12


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    store = local_store_with_release(tmp_path_factory)
    result = train(base_config(str(store.root), "report-run", max_steps=STEPS, eval_every=6, checkpoint_every=6,
                               eval_splits=["validation"]))
    return store, result


def _png_is_drawn(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.size[0] >= 500 and image.size[1] >= 300
    pixels = np.asarray(image.convert("L"))
    assert len(np.unique(pixels)) > 20 and pixels.std() > 5  # drawn on, not blank


def test_the_loop_writes_its_summary_and_no_report(finished_run):
    store, result = finished_run
    run = run_store(store, "report-run")
    assert run.exists("summary.json") and run.exists("metrics.parquet")
    assert result.report_url is None and list(result.files) == ["summary.json"]
    assert not any(run.exists(name) for name in (REPORT_FILE, "report.html", *PLOTS))


def test_report_from_the_runs_own_files(finished_run):
    store, result = finished_run
    run = run_store(store, "report-run")
    urls = write_report(run)
    assert list(urls) == ["cer.png", "curriculum.png", "loss.png", "report.md", "report.html"]
    assert urls["report.md"] == run.url("report.md")
    md, page = run.get_bytes("report.md").decode(), run.get_bytes("report.html").decode()
    summary = json.loads(run.get_bytes("summary.json"))
    assert md.startswith(f"# Training run `report-run`\n\nRelease `{RELEASE}` on `{store.uri}`")
    for words in ("## Error rates", f"At step {STEPS}.", "## Compute", "device-hours", "audio hours processed",
                  "throughput", "## Curriculum as realised", "## Data problems", "No shard failed its checksum.",
                  "## Config", "```yaml"):
        assert words in md, words
    for row in result.final_eval:  # one table row per evaluated domain and split
        assert re.search(rf"^\| {row['domain']} \| validation \| {row['samples']} \|", md, re.M), row
    assert yaml.safe_load(md.split("```yaml\n")[1].split("```")[0]) == summary["config"]
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert images == ["loss.png", "cer.png", "curriculum.png"]
    assert re.findall(r'<img src="([^"]+)"', page) == images, "the HTML shows what the markdown shows"
    assert "<title>Training run report-run</title>" in page and "<script" not in page
    for name in PLOTS:
        _png_is_drawn(run.get_bytes(name))
    # the report depends only on the run's files: rendering again gives the same bytes
    doc, title = render_report(summary, RunDir(run).get_rows("metrics.parquet"))
    assert (to_markdown(doc), to_html(doc, title)) == (md, page)
    assert all(doc.images[name] == run.get_bytes(name) for name in PLOTS)


def test_an_unfinished_run_has_nothing_to_report(tmp_path):
    with pytest.raises(ValueError, match="has not finished"):
        write_report(run_store(open_store(tmp_path), "never-ran"))


def test_the_train_command_writes_the_report(finished_run, tmp_path, capsys):
    store, _ = finished_run
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"model": TINY_MODEL, "shuffle_buffer": 8, "eval_max_samples": 6,
                                      "warmup_steps": 20, "lr": 3e-3}))
    code = cli_main(["train", "--store", str(store.root), "--release", RELEASE, "--run", "cli-report",
                     "--config", str(config), "--max-steps", "4", "--eval-every", "4", "--checkpoint-every", "4",
                     "--batch-seconds", "10", "--num-workers", "0", "--threads", "1", "--eval-splits", "validation"])
    assert code == 0
    run = run_store(store, "cli-report")
    assert capsys.readouterr().out.rstrip().endswith(f"report: {run.url('report.md')}")
    assert run.exists("report.html") and all(run.exists(name) for name in PLOTS)
    assert run.get_bytes("report.md").decode().startswith("# Training run `cli-report`")
