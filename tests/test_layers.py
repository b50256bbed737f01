"""The packages' layering, read from every module's imports (``ast``, function-local imports included).

    corpus  <  reference, pipelines, training  <  presentation  <  flows and the CLI commands

``corpus`` imports nothing of ours. ``reference``, ``pipelines`` and ``training`` sit side by side
on ``corpus`` and import none of each other. ``presentation`` renders what the layers below write
(it reads releases and run folders through the store) and may read the definitions of the layers
below it (the datasheet's threshold table comes from ``pipelines.rules``). ``flows`` is
the top. A package's ``cli.py`` is the entry layer of that package: it may also import
``presentation`` (a command writes its documents after the work), never ``flows``. Anything else
is an exception listed below with its reason, and an exception that no longer happens is reported
too, so the list stays true.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("corpus", "reference", "pipelines", "training", "presentation", "flows")

# what each package's modules may import of ours (besides itself)
ALLOWED = {
    "corpus": set(),
    "reference": {"corpus"},
    "pipelines": {"corpus"},
    "training": {"corpus"},
    "presentation": {"corpus", "pipelines", "training"},
    "flows": {"corpus", "reference", "pipelines", "training", "presentation"},
}
# the entry layer: a package's command module may also write documents
ENTRY_MODULE = "cli.py"
ENTRY_ALLOWED = {"presentation"}
NO_ENTRY_LAYER = {"corpus"}  # corpus/cli.py hosts `stt-corpus` and finds commands by entry point only

# (module, package it imports): why the rule above does not hold there
EXCEPTIONS = {
    ("pipelines/cli.py", "reference"):
        "`stt-corpus calibrate` reads its gold set with reference.releases.read_truth (gen-audio's "
        "truth.jsonl format); the calibration itself (pipelines/calibrate.py) takes plain items",
}


def imports_of(path: Path) -> set[str]:
    """Top-level names of the absolute imports anywhere in the module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def layer_problems(root: Path, exceptions: dict = EXCEPTIONS) -> list[str]:
    """Every import that breaks the layering under ``root``, and every exception no longer used."""
    problems, used = [], set()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = path.relative_to(root).as_posix()
            allowed = set(ALLOWED[package])
            if path.name == ENTRY_MODULE and path.parent == root / package and package not in NO_ENTRY_LAYER:
                allowed |= ENTRY_ALLOWED
            for imported in sorted(imports_of(path) & set(PACKAGES) - {package}):
                if imported in allowed:
                    continue
                if (module, imported) in exceptions:
                    used.add((module, imported))
                    continue
                problems.append(f"{module} imports {imported}")
    problems += [f"stale exception: {module} no longer imports {imported}"
                 for module, imported in sorted(set(exceptions) - used)]
    return problems


def test_the_packages_keep_their_layers():
    assert all((ROOT / p / "__init__.py").exists() for p in PACKAGES)
    assert layer_problems(ROOT) == []


def test_the_check_sees_the_imports_it_must_see():
    """Not vacuous: the real cross-package imports are found, top-level and inside functions."""
    assert "corpus" in imports_of(ROOT / "presentation/datasheet.py")
    assert "presentation" in imports_of(ROOT / "flows/build_corpus.py")  # inside a task function
    assert "reference" in imports_of(ROOT / "pipelines/cli.py")  # inside a command function


def test_a_forbidden_import_is_reported(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "corpus/store.py").write_text("from pipelines.build import run_build\n")
    (tmp_path / "training/loop.py").write_text("def f():\n    from presentation import document\n")
    (tmp_path / "training/cli.py").write_text("import presentation.training_report\nimport flows\n")
    (tmp_path / "presentation/datasheet.py").write_text("import flows.artifacts\nfrom . import document\n")
    (tmp_path / "pipelines/cli.py").write_text("from reference.releases import read_truth\nimport training\n")
    (tmp_path / "pipelines/sub").mkdir()
    (tmp_path / "pipelines/sub/cli.py").write_text("import presentation\n")  # only the package's own cli.py
    (tmp_path / "flows/x.py").write_text("import corpus, reference, pipelines, training, presentation\n")
    assert layer_problems(tmp_path, {**EXCEPTIONS, ("corpus/cli.py", "flows"): "gone"}) == [
        "corpus/store.py imports pipelines",
        "pipelines/cli.py imports training",
        "pipelines/sub/cli.py imports presentation",
        "training/cli.py imports flows",
        "training/loop.py imports presentation",
        "presentation/datasheet.py imports flows",
        "stale exception: corpus/cli.py no longer imports flows",
    ]
