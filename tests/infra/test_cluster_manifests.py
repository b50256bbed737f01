"""infra/cluster: manifests parse, placement agrees with the build config, no credential is written
in, and (when a KubeRay CRD file is given in $KUBERAY_CRD) the RayCluster matches its schema."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "infra" / "cluster"
sys.path.insert(0, str(CLUSTER))

import validate  # noqa: E402


def test_manifests_pass_every_check():
    assert validate.validate(CLUSTER) == []


def _copy(tmp_path: Path) -> Path:
    out = tmp_path / "cluster"
    shutil.copytree(CLUSTER, out, ignore=shutil.ignore_patterns("__pycache__"))
    return out


def test_placement_check_catches_a_label_resource_no_gpu_group_declares(tmp_path):
    folder = _copy(tmp_path)
    build = yaml.safe_load((folder / "build.yaml").read_text())
    build["resources"]["label_resources"] = {"asr_big": 1}
    (folder / "build.yaml").write_text(yaml.safe_dump(build))
    errors = validate.validate(folder)
    assert any("'asr_big': no worker group declares it" in e for e in errors), errors


def test_placement_check_catches_work_on_the_head_and_cpu_resource_on_gpus(tmp_path):
    folder = _copy(tmp_path)
    text = (folder / "raycluster.yaml").read_text()
    text = text.replace('num-cpus: "0"', 'num-cpus: "4"').replace('\\"asr\\": 1', '\\"asr\\": 1, \\"cpu_pool\\": 8')
    (folder / "raycluster.yaml").write_text(text)
    errors = validate.validate(folder)
    assert any("head must take no work" in e for e in errors), errors
    assert any("declares 'cpu_pool' (cpu_resources) but has GPUs" in e for e in errors), errors


def test_credential_check_catches_a_secret_written_in(tmp_path):
    folder = _copy(tmp_path)
    with open(folder / "s3.yaml", "a") as fh:
        fh.write("  AWS_SECRET_ACCESS_KEY: hunter2\n")
    errors = validate.validate(folder)
    assert any("AWS_SECRET_ACCESS_KEY given a value" in e for e in errors), errors


def test_build_config_of_the_cluster_is_valid_and_placed():
    from pipelines.config import load_config

    config = load_config(CLUSTER / "build.yaml")
    assert config.resources.label_resources == {"asr": 1} and config.resources.cpu_resources == {"cpu_pool": 1}


@pytest.mark.skipif(not os.environ.get("KUBERAY_CRD"), reason="set KUBERAY_CRD to KubeRay's ray.io_rayclusters.yaml")
def test_raycluster_matches_the_kuberay_crd(tmp_path):
    crd = Path(os.environ["KUBERAY_CRD"])
    assert validate.check_crd(validate.documents(CLUSTER), crd) == []
    folder = _copy(tmp_path)
    text = (folder / "raycluster.yaml").read_text().replace("minReplicas: 0", "minReplica: 0", 1)
    (folder / "raycluster.yaml").write_text(text)
    errors = validate.check_crd(validate.documents(folder), crd)
    assert any("minReplica" in e for e in errors), errors
