"""Publish a notebook as ONE self-contained HTML page whose widgets render offline.

``python -m mechscope.publish NOTEBOOK.ipynb OUT.html`` executes the notebook headless (nbclient,
the ``python3`` kernel of the running interpreter, cwd = the notebook's folder), then exports it
with nbconvert's lab template so that every mechscope widget shows its ``text/html`` snapshot
(state and ESM inlined, see ``widgets/_base.py``) instead of the live widget view. Widget state is
not written to the page, ipywidgets outputs (progress bars) are left out, and the template's CDN
scripts (require.js, the widget manager, MathJax, mermaid) are dropped: the page needs no kernel
and makes no network request. LaTeX and mermaid sources show as text. The kernel gets
HF_HUB_OFFLINE=1 and OMP_WAIT_POLICY=PASSIVE unless set. Needs the ``lab`` extras.

``python -m mechscope.publish --site build/site notebooks/*.ipynb`` (`publish_site`, ``make html``)
does the same for several notebooks, one after another, and writes ``index.html`` beside the
pages: a plain offline page linking each one (relative links) with its title and widget count.

``python -m mechscope.publish --notebook NOTEBOOK OUT.ipynb`` (`publish_notebook`) writes the
published *notebook* instead: each widget's offline snapshot made from the widget state stored
in it, no widget views, no progress bars, no stored state; every static renderer (nbconvert,
nbviewer, Sphinx + myst-nb, mkdocs-jupyter) draws that copy. ``--strip-widget-state`` does
the same in place (`strip_widget_state`).

Where the snapshots come from: a live display carries only a placeholder in ``text/html`` (each
array travels and is stored once, as widget state); the snapshot is made here, at publish
time, from the stored state (`mechscope.publish.stored`).

Modules: `mechscope.publish.page` (one notebook: `publish`, `export_html`, `publish_notebook`,
`strip_widget_state`), `mechscope.publish.stored` (snapshots from stored widget state:
`publish_widgets`), `mechscope.publish.site` (`publish_site`), `mechscope.publish.cli`
(the command line, ``python -m mechscope.publish --help``).

>>> import mechscope
>>> callable(mechscope.publish.publish_site), callable(mechscope.publish.export_html)
(True, True)
"""

from .cli import main
from .page import (
    DISPLAY_PRIORITY,
    PublishedWidget,
    PublishReport,
    execute_notebook,
    export_html,
    find_widgets,
    notebook_title,
    publish,
    publish_notebook,
    remote_refs,
    render_html,
    strip_widget_state,
)
from .site import SitePage, SiteReport, publish_site
from .stored import StoredReport, publish_widgets

__all__ = [
    "DISPLAY_PRIORITY",
    "PublishReport",
    "PublishedWidget",
    "SitePage",
    "SiteReport",
    "StoredReport",
    "execute_notebook",
    "export_html",
    "find_widgets",
    "main",
    "notebook_title",
    "publish",
    "publish_notebook",
    "publish_site",
    "publish_widgets",
    "remote_refs",
    "render_html",
    "strip_widget_state",
]
