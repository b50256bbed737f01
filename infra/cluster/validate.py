"""Check the cluster manifests without a cluster.

1. Every YAML document parses and has apiVersion, kind and metadata.name.
2. The RayCluster matches the KubeRay CRD's openAPIV3Schema (``--crd FILE``: KubeRay's
   ``ray-operator/config/crd/bases/ray.io_rayclusters.yaml``; not vendored here, pass a copy of
   the KubeRay release you deploy). Unknown fields are errors, as the API server prunes them.
3. Placement agrees with the build config: every custom resource that ``build.yaml`` asks for
   (resources.label_resources, resources.cpu_resources) is declared by a worker group, the label
   resource only by groups with GPUs, the CPU one only by groups without; the head takes no work.
4. No credential is written in: no AWS secret key, session token or Ray token values anywhere,
   and every pod gets S3 settings from the ConfigMap / Secret references only.
5. ``build.yaml`` is a valid build config (pipelines.config).
6. The Dockerfile installs from the lock only (``uv sync --frozen``, uv pinned by hash) and every
   path it copies exists. (Building it needs a Docker engine; this does not build it.)

Exit status 0 when all checks pass; each failure is printed. ``python infra/cluster/validate.py
[--crd FILE]``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
MANIFESTS = ("s3.yaml", "raycluster.yaml", "prefect.yaml")
SECRET_NAMES = re.compile(r"(AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN|AWS_ACCESS_KEY_ID|RAY_AUTH_TOKEN|PREFECT_API_KEY)")


def documents(folder: Path = HERE) -> list[dict]:
    docs = []
    for name in MANIFESTS:
        for doc in yaml.safe_load_all((folder / name).read_text()):
            if doc is not None:
                docs.append({**doc, "_file": name})
    return docs


def check_structure(docs: list[dict]) -> list[str]:
    errors = []
    for d in docs:
        for key in ("apiVersion", "kind"):
            if not d.get(key):
                errors.append(f"{d['_file']}: a document without {key}")
        if not (d.get("metadata") or {}).get("name"):
            errors.append(f"{d['_file']}: {d.get('kind')} without metadata.name")
    return errors


def crd_schema(crd_path: Path, version: str = "v1") -> dict:
    crd = yaml.safe_load(crd_path.read_text())
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise ValueError(f"{crd_path}: no version {version}")


def _strict(schema: dict) -> dict:
    """The schema with additionalProperties: false wherever properties are listed and nothing else
    is allowed (the API server prunes unknown fields silently; here they are errors)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
        if "properties" in out and "additionalProperties" not in out \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        if schema.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return out
    if isinstance(schema, list):
        return [_strict(x) for x in schema]
    return schema


def check_crd(docs: list[dict], crd_path: Path) -> list[str]:
    import jsonschema

    schema = _strict(crd_schema(crd_path))
    validator = jsonschema.Draft7Validator(schema)
    errors = []
    for d in docs:
        if d.get("kind") != "RayCluster":
            continue
        body = {k: v for k, v in d.items() if k != "_file"}
        for err in sorted(validator.iter_errors(body), key=lambda e: list(e.path)):
            where = ".".join(str(p) for p in err.path) or "(top)"
            errors.append(f"{d['_file']}: {where}: {err.message[:300]}")
    return errors


def _resources(params: dict) -> dict:
    raw = params.get("resources")
    if not raw:
        return {}
    return json.loads(json.loads(raw) if raw.startswith('"') else raw)


def check_placement(docs: list[dict], build: dict) -> list[str]:
    errors = []
    clusters = [d for d in docs if d.get("kind") == "RayCluster"]
    if len(clusters) != 1:
        return [f"expected one RayCluster, found {len(clusters)}"]
    spec = clusters[0]["spec"]
    if spec["headGroupSpec"]["rayStartParams"].get("num-cpus") != "0":
        errors.append("raycluster.yaml: the head must take no work (rayStartParams num-cpus: \"0\")")
    groups = {}
    for g in spec["workerGroupSpecs"]:
        container = g["template"]["spec"]["containers"][0]
        gpus = int((container.get("resources", {}).get("limits", {}) or {}).get("nvidia.com/gpu", 0))
        groups[g["groupName"]] = (_resources(g["rayStartParams"]), gpus, g)
        if not g.get("minReplicas", 0) <= g.get("replicas", 0) <= g.get("maxReplicas", 0):
            errors.append(f"raycluster.yaml: group {g['groupName']}: replicas outside [minReplicas, maxReplicas]")
        if gpus and g["rayStartParams"].get("num-gpus") != str(gpus):
            errors.append(f"raycluster.yaml: group {g['groupName']}: num-gpus must equal its nvidia.com/gpu limit")
    res = build.get("resources", {})
    for kind, wanted, needs_gpu in (("label_resources", res.get("label_resources", {}), True),
                                    ("cpu_resources", res.get("cpu_resources", {}), False)):
        for name in wanted:
            holders = [n for n, (r, gpus, _) in groups.items() if name in r]
            if not holders:
                errors.append(f"build.yaml resources.{kind} asks for {name!r}: no worker group declares it")
            for n in holders:
                if bool(groups[n][1]) != needs_gpu:
                    errors.append(f"worker group {n} declares {name!r} ({kind}) but "
                                  f"{'has no GPU' if needs_gpu else 'has GPUs'}")
    label = res.get("label_resources", {})
    if label:
        name, per_actor = next(iter(label.items()))
        slots = sum(r.get(name, 0) * g.get("maxReplicas", 0) for r, _, g in groups.values())
        if slots < res.get("label_actors", 1) * per_actor:
            errors.append(f"label_actors {res.get('label_actors')} need {name} x{per_actor} each; the groups "
                          f"offer {slots} at maxReplicas")
    return errors


def check_no_credentials(folder: Path = HERE) -> list[str]:
    errors = []
    for path in sorted(folder.glob("*")):
        if path.suffix not in (".yaml", ".yml") and path.name != "Dockerfile":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            m = SECRET_NAMES.search(line)
            # a credential may be named only as a reference (secretKeyRef / valueFrom), never given a value
            if m and re.search(rf"{m.group(1)}\s*[:=]\s*\S", line) and "valueFrom" not in line:
                errors.append(f"{path.name}:{n}: {m.group(1)} given a value")
            if re.search(r"AKIA[0-9A-Z]{16}", line):
                errors.append(f"{path.name}:{n}: looks like an AWS access key id")
    return errors


def check_build_config(folder: Path = HERE) -> tuple[dict, list[str]]:
    sys.path.insert(0, str(folder.parents[1]))
    from pipelines.config import ConfigError, load_config

    try:
        load_config(folder / "build.yaml")
    except ConfigError as err:
        return {}, [f"build.yaml: {err}"]
    return yaml.safe_load((folder / "build.yaml").read_text()), []


def check_dockerfile(folder: Path = HERE) -> list[str]:
    root = folder.parents[1]
    text = (folder / "Dockerfile").read_text()
    errors = []
    syncs = re.findall(r"uv sync ([^\n&]*)", text)
    if not syncs or any("--frozen" not in s for s in syncs):
        errors.append("Dockerfile: every `uv sync` must be --frozen (install exactly uv.lock)")
    if "--require-hashes -r infra/uv-requirements.txt" not in text:
        errors.append("Dockerfile: uv must come from infra/uv-requirements.txt with --require-hashes")
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                if not (root / src).exists():
                    errors.append(f"Dockerfile: COPY {src}: no such path in the repository")
    return errors


def validate(folder: Path = HERE, crd: Path | None = None) -> list[str]:
    docs = documents(folder)
    build, errors = check_build_config(folder)
    errors += check_structure(docs) + check_placement(docs, build) + check_no_credentials(folder)
    errors += check_dockerfile(folder)
    if crd is not None:
        errors += check_crd(docs, crd)
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crd", type=Path, help="KubeRay's ray.io_rayclusters.yaml (CRD schema check)")
    args = parser.parse_args()
    errors = validate(HERE, args.crd)
    for e in errors:
        print(f"FAIL {e}")
    checks = "structure, placement vs build.yaml, no credentials, build config, Dockerfile sources" + (", KubeRay CRD schema" if args.crd
                                                                                     else " (no --crd: schema not checked)")
    print(f"{'OK' if not errors else f'{len(errors)} problems'}: {checks}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
