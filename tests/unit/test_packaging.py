"""The pieces a new widget or module must be registered in stay in step (CONTRIBUTING's checklists).

- every TypeScript entry point `npm run build` bundles is in pyproject's ``ensured-targets``
  (so a wheel never ships without it) and nothing else is;
- every widget class exported by `mechscope.widgets` names a bundle that is built, has a
  TypeScript module of the same name, and is in the hostile catalogue (`tests/hostile.py`);
- every public submodule is reachable as an attribute after ``import mechscope``, without a
  warning from ``python -m`` for the packages that have a command line.
"""

from __future__ import annotations

import glob
import json
import re
import subprocess
import sys
from pathlib import Path

import tomllib

import mechscope
from mechscope import widgets
from mechscope.widgets._base import MechscopeWidget

ROOT = Path(__file__).resolve().parents[2]


def _built_entry_points() -> set[str]:
    """Bundle stems `npm run build` writes: each esbuild entry point glob of package.json."""
    build = json.loads((ROOT / "package.json").read_text())["scripts"]["build"]
    stems = set()
    for command in build.split("&&"):
        for pattern in re.findall(r"(js/\S+\.ts)", command):
            stems |= {Path(p).stem for p in glob.glob(str(ROOT / pattern))}
    return stems


def test_ensured_targets_are_exactly_the_built_bundles():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    targets = config["tool"]["hatch"]["build"]["hooks"]["jupyter-builder"]["ensured-targets"]
    assert {Path(t).stem for t in targets} == _built_entry_points()
    assert all(t.startswith("src/mechscope/static/") and t.endswith(".js") for t in targets)


def test_every_widget_has_its_bundle_module_and_hostile_entry():
    from tests.hostile import widgets as hostile_widgets

    classes = [getattr(widgets, name) for name in widgets.__all__]
    classes = [c for c in classes if isinstance(c, type) and issubclass(c, MechscopeWidget)]
    assert classes, "mechscope.widgets exports no widget"
    built = _built_entry_points()
    hostile = set(hostile_widgets())
    for cls in classes:
        stem = cls._bundle_file.stem
        module = Path(sys.modules[cls.__module__].__file__).stem
        assert (ROOT / "js" / "widgets" / f"{module}.ts").is_file(), f"{cls.__name__}: no js/widgets/{module}.ts"
        assert module in built, f"{cls.__name__}: js/widgets/{module}.ts is not built"
        assert stem == module, f"{cls.__name__} loads {stem}.js, not {module}.js"
        assert cls.__name__ in hostile, f"{cls.__name__} is not in tests/hostile.py's widgets()"


def test_public_submodules_are_attributes_and_run_without_warnings():
    for name in mechscope.SUBMODULES:
        module = getattr(mechscope, name)
        assert module.__name__ == f"mechscope.{name}"
    proc = subprocess.run([sys.executable, "-W", "error", "-m", "mechscope.publish", "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0 and "usage: python -m mechscope.publish" in proc.stdout
    assert proc.stderr == "", proc.stderr
    assert callable(mechscope.metrics.logit_diff) and callable(mechscope.publish.publish_site)
    assert callable(mechscope.datasets.labelled_texts) and callable(mechscope.dynamics.train)
