"""Make this environment's JupyterLab save widget state, so saved notebooks reopen with widgets.

JupyterLab does not store widget models in a notebook unless the ipywidgets setting
``saveState`` is on; without it a notebook reopened without its kernel shows
"Error displaying widget: model not found" where each widget was. ``make setup`` and Binder's
``postBuild`` run ``python -m mechscope.lab_settings``, which merges that one setting into the
environment's ``share/jupyter/lab/settings/overrides.json`` (JupyterLab's per-environment
defaults; a user's own settings still win). Other entries in that file are kept.

Cost: a notebook saved with widget state holds each widget's data twice (the widget state and
the offline HTML snapshot used by exported pages and nbviewer).

>>> import json, tempfile
>>> from pathlib import Path
>>> prefix = Path(tempfile.mkdtemp())
>>> path = enable_saved_widget_state(prefix)
>>> json.loads(path.read_text())["@jupyter-widgets/jupyterlab-manager:plugin"]
{'saveState': True}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"


def overrides_path(prefix: str | Path = sys.prefix) -> Path:
    """JupyterLab's per-environment settings overrides file under ``prefix``."""
    return Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def enable_saved_widget_state(prefix: str | Path = sys.prefix) -> Path:
    """Set ``saveState: true`` for ipywidgets in ``prefix``'s overrides.json; return its path."""
    path = overrides_path(prefix)
    settings: dict = {}
    if path.exists():
        try:
            settings = json.loads(path.read_text(encoding="utf-8") or "{}")
        except ValueError as err:
            raise SystemExit(f"{path} is not valid JSON ({err}); fix or remove it, then run "
                             "`python -m mechscope.lab_settings` again.") from None
        if not isinstance(settings, dict):
            raise SystemExit(f"{path} must hold a JSON object; fix or remove it.")
    settings.setdefault(PLUGIN, {})["saveState"] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(f"==> JupyterLab saves widget state with notebooks: {enable_saved_widget_state()}")
