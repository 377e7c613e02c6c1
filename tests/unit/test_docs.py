"""The API reference (``make docs``, Sphinx): it builds, covers every public name, works offline,
and every public name's docstring carries a runnable ``>>>`` example.

The build tests need the ``docs`` extra, which ``make setup`` installs (``pip install -e
".[dev,docs]"``); without it they fail. The docstring test needs nothing but the package.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _load_api_helpers():
    spec = importlib.util.spec_from_file_location("mechscope_docs_api", DOCS / "_ext" / "mechscope_api.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


api = _load_api_helpers()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One Sphinx build of docs/ into a temp dir: (html dir, warnings text)."""
    import sphinx  # noqa: F401 - the docs extra is part of `make setup`; missing = a failure
    out = tmp_path_factory.mktemp("docs")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E", "-d", str(out / "doctrees"),
         str(DOCS), str(out / "html")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout}\n{proc.stderr}"
    return out / "html", proc.stderr


def _all_html(html_dir: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(html_dir.glob("*.html")))


def _expected_anchor(full_name: str, obj) -> str:
    """The HTML id the entry for a public name must have."""
    if inspect.ismodule(obj):
        return f"module-{obj.__name__}"
    if full_name in api.NAMESPACES:  # a package attribute shadowing a submodule's name
        return f"module-{full_name}"
    return full_name


def test_docs_build_index_and_site_link(built):
    html_dir, _ = built
    index = html_dir / "index.html"
    assert index.is_file()
    page = index.read_text(encoding="utf-8")
    assert 'href="../site/index.html"' in page, "the index must link the notebooks site"
    for area in ("models", "interventions", "analysis", "widgets", "metrics", "datasets",
                 "publish", "dynamics", "errors"):
        assert (html_dir / f"{area}.html").is_file(), f"no page for {area}"
        assert f'href="{area}.html"' in page, f"the index does not link {area}.html"


def test_every_public_name_has_an_entry(built):
    html_dir, _ = built
    pages = _all_html(html_dir)
    public = api.public_api()
    assert len(public) > 50, sorted(public)
    missing = [name for name, obj in public.items()
               if f'id="{_expected_anchor(name, obj)}"' not in pages]
    assert not missing, f"public names without an entry in the built reference: {missing}"


class _Resources(HTMLParser):
    """Every URL an HTML page loads by itself (scripts, stylesheets, fonts, images, frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "img", "iframe", "embed", "source", "audio", "video") and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href") and a.get("rel", "").lower() not in ("index", "search", "next", "prev", "author", "help", "license"):
            self.urls.append(a["href"])
        if tag == "object" and a.get("data"):
            self.urls.append(a["data"])
        if a.get("style"):
            self.urls += _css_urls(a["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.urls += _css_urls(data)


def _css_urls(css: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in re.finditer(
        r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""", css)]


def _remote(url: str) -> bool:
    return bool(re.match(r"(?i)^\s*(https?:)?//", url))


def test_built_pages_load_nothing_remote(built):
    html_dir, _ = built
    remote: list[str] = []
    for page in sorted(html_dir.rglob("*.html")):
        parser = _Resources()
        parser.feed(page.read_text(encoding="utf-8"))
        remote += [f"{page.name}: {u}" for u in parser.urls if _remote(u)]
    for css in sorted(html_dir.rglob("*.css")):
        remote += [f"{css.name}: {u}" for u in _css_urls(css.read_text(encoding="utf-8")) if _remote(u)]
    for js in sorted(html_dir.rglob("*.js")):
        text = js.read_text(encoding="utf-8", errors="replace")
        remote += [f"{js.name}: {m}" for m in re.findall(
            r"""(?:import\s*\(|importScripts\(|\bfrom\s)\s*['"]((?:https?:)?//[^'"]+)""", text)]
    assert not remote, f"the reference must open offline; remote resources: {remote}"


def test_docs_build_has_no_warnings(built):
    """Docstrings are reStructuredText: a warning means something renders wrong."""
    _, warnings = built
    lines = [line for line in warnings.splitlines() if "WARNING" in line or "ERROR" in line]
    assert not lines, "Sphinx warnings (fix the docstring at the location given):\n" + "\n".join(lines)


def test_every_public_name_has_a_runnable_example():
    """Each public function, class and module documents itself with a ``>>>`` example (run by
    test_doctests.py); a constant needs a ``#:`` doc comment. One entry per object (a name
    re-exported by the package is listed once)."""
    seen: dict[int, str] = {}
    lacking: list[str] = []
    for name, obj in api.public_api().items():
        if id(obj) in seen:
            continue
        seen[id(obj)] = name
        if api.is_data(obj):
            namespace, short = name.rsplit(".", 1)
            if not api.attr_doc(api.defining_module(namespace, short, obj), short):
                lacking.append(f"{name} (constant without a #: doc comment)")
            continue
        doc = obj.__doc__ if isinstance(obj.__doc__, str) else ""
        if ">>>" not in doc:
            lacking.append(name)
    assert not lacking, (
        f"{len(lacking)} public name(s) whose own docstring has no >>> example:\n  "
        + "\n  ".join(lacking))
