"""Sphinx configuration for the mechscope API reference (``make docs`` -> build/docs/index.html).

Offline by construction: the stock ``alabaster`` theme (system fonts, local CSS/JS only), no
intersphinx, no MathJax, no analytics or badges. The pages are generated from the installed
package by ``_ext/mechscope_api.py``; nothing here lists mechscope's names by hand.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import mechscope  # noqa: E402

project = "mechscope"
author = "mechscope contributors"
copyright = "mechscope contributors"
version = release = mechscope.__version__

extensions = ["sphinx.ext.autodoc", "mechscope_api"]
templates_path = ["_templates"]
exclude_patterns = ["_build"]
root_doc = "index"

# `single backticks` in the docstrings are object references (``double`` is literal text).
default_role = "py:obj"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False
add_module_names = True
python_display_short_literal_types = True

# Package-level names are split into area pages by the module that defines them (the
# ``:prefix:`` of each page's ``mechscope-api`` directive); whatever no page claims is listed on
# the index page (``:rest:``), so every public name has an entry.
#: The notebooks site (make site / make html) relative to build/docs/index.html.
mechscope_site_url = "../site/index.html"

html_theme = "alabaster"
html_title = f"mechscope {release} API reference"
html_theme_options = {
    "description": "A microscope for language models that lives in Jupyter.",
    "fixed_sidebar": False,
    "show_powered_by": False,
    "github_button": False,
    "page_width": "1100px",
    "sidebar_width": "230px",
    # system fonts only (alabaster never loads web fonts; these keep it that way)
    "font_family": "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif",
    "head_font_family": "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif",
    "code_font_family": "'DejaVu Sans Mono', Menlo, Consolas, monospace",
}
html_sidebars = {"**": ["about.html", "sitelink.html", "navigation.html", "searchbox.html"]}
html_static_path: list[str] = []
html_copy_source = False
html_show_sourcelink = False
html_show_sphinx = False
html_last_updated_fmt = None
html_context = {"mechscope_site_url": mechscope_site_url}
toc_object_entries_show_parents = "hide"
# `single backticks` like `.show()` name several objects; the first match is linked, quietly.
suppress_warnings = ["ref.python"]
