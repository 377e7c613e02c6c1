"""`python -m mechscope.lab_settings` (run by `make setup` and Binder's postBuild): JupyterLab
in this environment saves widget state, other overrides are kept, a broken file is named; and
`make lab` serves on 127.0.0.1 only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mechscope.lab_settings import PLUGIN, enable_saved_widget_state, overrides_path

REPO = Path(__file__).resolve().parents[2]


def test_merges_into_existing_overrides(tmp_path):
    path = overrides_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"other:plugin": {"x": 1}, PLUGIN: {"keep": "me"}}))
    assert enable_saved_widget_state(tmp_path) == path
    assert json.loads(path.read_text()) == {"other:plugin": {"x": 1}, PLUGIN: {"keep": "me", "saveState": True}}
    enable_saved_widget_state(tmp_path)  # idempotent
    assert json.loads(path.read_text())[PLUGIN] == {"keep": "me", "saveState": True}


def test_a_broken_overrides_file_is_named_not_overwritten(tmp_path):
    path = overrides_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(SystemExit, match=r"overrides.json is not valid JSON .* fix or remove it"):
        enable_saved_widget_state(tmp_path)
    assert path.read_text() == "{not json"


def test_this_environment_has_it():
    """`make setup` ran it for the venv the tests run in (the browser tier relies on it)."""
    settings = json.loads(overrides_path(sys.prefix).read_text())
    assert settings[PLUGIN]["saveState"] is True


def test_make_lab_listens_on_loopback_only():
    recipe = subprocess.run(["make", "-n", "lab"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    lab_line = next(line for line in recipe.splitlines() if "jupyter lab" in line)
    assert "--ServerApp.ip=127.0.0.1" in lab_line
