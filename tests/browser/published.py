"""The executed tour notebook every publishing route is tested with, executed once and cached.

``executed_tour()`` runs notebooks/01_tour.ipynb headless (`mechscope.publish.execute_notebook`:
nbclient, widget state stored, as JupyterLab with "save widget state" or any publisher that
executes would) and caches the result under build/published/, keyed by a hash of the notebook
and of mechscope's sources, so the Sphinx, mkdocs, nbconvert and export tests share one run.
A file lock keeps concurrent test processes from executing it twice.
"""

from __future__ import annotations

import fcntl
import hashlib
from pathlib import Path

import nbformat

from mechscope.publish import execute_notebook

REPO = Path(__file__).resolve().parents[2]
TOUR = REPO / "notebooks" / "01_tour.ipynb"
CACHE = REPO / "build" / "published"
#: mechscope widget outputs the tour shows (three Heatmaps and a PatchingMap)
TOUR_WIDGETS = 4


def _key() -> str:
    digest = hashlib.sha256(TOUR.read_bytes())
    for path in sorted((REPO / "src" / "mechscope").rglob("*")):
        if path.suffix in (".py", ".js") and path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def executed_tour() -> Path:
    """The executed tour (.ipynb, widget state stored): a path under build/published/."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out = CACHE / f"01_tour.executed-{_key()}.ipynb"
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not out.is_file():
            nb = nbformat.read(TOUR, as_version=4)
            execute_notebook(nb, TOUR.parent, timeout=900)
            tmp = out.with_suffix(".tmp")
            nbformat.write(nb, tmp)
            tmp.replace(out)
    return out
