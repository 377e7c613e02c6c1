"""Sphinx extension for the mechscope API reference: pages generated from the live package.

Nothing here lists mechscope's names by hand, so the reference follows refactors:

``.. mechscope-api:: NAMESPACE``
    Documents every public name of ``NAMESPACE`` (its ``__all__``, else the public names bound
    at its top level), grouped by the module that defines each object; each group starts with
    that module's docstring (where the runnable examples usually live). A submodule page
    (``mechscope.metrics``, ...) also gets the namespace's own ``automodule`` target.

    ``:prefix: mechscope.models`` keeps only the names whose defining module starts with the
    prefix (used for the package-level names, split into area pages); ``:rest:`` keeps the names
    that no ``:prefix:`` on any page claims, so no public name can fall off the reference.

    A package-level name whose object is also exported by a documented submodule (e.g.
    ``mechscope.export_html`` = ``mechscope.publish.export_html``) gets a short entry pointing
    to the submodule page instead of a second copy of its docs; a name that is itself a
    documented submodule (``mechscope.dynamics``) gets a link to that page.

``.. mechscope-site-link::``
    A paragraph linking the notebooks site (``make site`` -> ``build/site/index.html``), by the
    relative URL ``mechscope_site_url`` (``../site/index.html`` from ``build/docs/``), saying so
    when that page was absent at build time.

The helpers :func:`public_names` and :func:`public_api` are what ``tests/unit/test_docs.py``
checks the built pages and the docstrings against.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import types
from pathlib import Path
from typing import Any

#: The documented namespaces: the package and its public submodules (each gets a page).
NAMESPACES = (
    "mechscope",
    "mechscope.metrics",
    "mechscope.datasets",
    "mechscope.publish",
    "mechscope.dynamics",
    "mechscope.corpus",
    "mechscope.sae",
    "mechscope.circuits",
    "mechscope.widgets",
)


def import_namespace(name: str) -> types.ModuleType:
    """The module ``name`` from ``sys.modules`` (robust to a package attribute rebinding it)."""
    importlib.import_module(name)
    return sys.modules[name]


def _top_level_bindings(module: types.ModuleType) -> list[str]:
    """Names a module binds at its top level by def / class / assignment (not by import)."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return [n for n in vars(module) if not n.startswith("_")]
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names.extend(t.id for t in ast.walk(target) if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return list(dict.fromkeys(names))


def public_names(namespace: str) -> list[str]:
    """The public names of a namespace: ``__all__`` if it has one, else its own public bindings."""
    module = import_namespace(namespace)
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in _top_level_bindings(module) if not n.startswith("_")]
    return [n for n in names if hasattr(module, n)]


def public_api() -> dict[str, Any]:
    """Every documented public name, fully qualified (``mechscope.metrics.logit_diff``), and its object."""
    out: dict[str, Any] = {}
    for namespace in NAMESPACES:
        module = import_namespace(namespace)
        for name in public_names(namespace):
            out[f"{namespace}.{name}"] = getattr(module, name)
    return out


def is_data(obj: Any) -> bool:
    """True for constants (tuples, dicts, ...): documented by a ``#:`` comment, not a docstring."""
    return not (inspect.isclass(obj) or inspect.ismodule(obj) or callable(obj))


def defining_module(namespace: str, name: str, obj: Any) -> str:
    """The dotted name of the module whose source defines ``obj`` (for data: binds ``name``)."""
    if inspect.ismodule(obj):
        return obj.__name__
    if not is_data(obj):
        return getattr(obj, "__module__", None) or namespace
    candidates = sorted(
        m for m, mod in list(sys.modules.items())
        if (m == "mechscope" or m.startswith("mechscope.")) and isinstance(mod, types.ModuleType)
        and vars(mod).get(name) is obj
    )
    for m in candidates:
        if name in _top_level_bindings(sys.modules[m]):
            return m
    return namespace


def attr_doc(module_name: str, name: str) -> list[str]:
    """The doc of a module-level constant: ``#:`` comment lines above (or on) its assignment, or
    a string literal right after it (what autodoc shows, read without importing Sphinx)."""
    module = sys.modules.get(module_name) or import_namespace(module_name)
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError):
        return []
    lines = source.splitlines()
    body = ast.parse(source).body
    for i, node in enumerate(body):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
            continue
        first = lines[node.lineno - 1]
        if "#:" in first:
            return [first.split("#:", 1)[1].strip()]
        doc: list[str] = []
        j = node.lineno - 2
        while j >= 0 and lines[j].lstrip().startswith("#:"):
            doc.insert(0, lines[j].lstrip()[2:].strip())
            j -= 1
        if doc:
            return doc
        after = body[i + 1] if i + 1 < len(body) else None
        if (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            return inspect.cleandoc(after.value.value).splitlines()
        return []
    return []


def claimed_prefixes(srcdir: str | Path) -> tuple[str, ...]:
    """Every ``:prefix:`` a ``mechscope-api`` directive uses in the pages under ``srcdir``."""
    found: list[str] = []
    for page in sorted(Path(srcdir).rglob("*.rst")):
        found += re.findall(r"^\s+:prefix:\s*(\S+)\s*$", page.read_text(encoding="utf-8"), re.M)
    return tuple(dict.fromkeys(found))


def _source_line(obj: Any) -> int:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return 10**9


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj)).replace("\n", " ")
    except (TypeError, ValueError):
        return "(...)"


def _first_line(module_name: str) -> str:
    doc = inspect.getdoc(sys.modules.get(module_name)) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _indent(lines: list[str], by: str = "   ") -> list[str]:
    return [by + line if line.strip() else "" for line in lines]


def generate(namespace: str, prefix: str | None = None, rest: bool = False,
             prefixes: tuple[str, ...] = ()) -> list[str]:
    """The reStructuredText for one ``mechscope-api`` directive."""
    module = import_namespace(namespace)
    documented = set(NAMESPACES) - {namespace}
    lines: list[str] = []
    if namespace != "mechscope":
        # The module target (``module-mechscope.metrics``) and its docstring.
        lines += [f".. automodule:: {namespace}", ""]

    groups: dict[str, list[tuple[str, Any]]] = {}
    for name in public_names(namespace):
        obj = getattr(module, name)
        origin = defining_module(namespace, name, obj)
        if prefix is not None and not (origin == prefix or origin.startswith(prefix + ".")):
            continue
        if rest and any(origin == p or origin.startswith(p + ".") for p in prefixes):
            continue
        groups.setdefault(origin, []).append((name, obj))

    for origin in sorted(groups):
        members = sorted(groups[origin], key=lambda item: (_source_line(item[1]), item[0]))
        # A public subpackage that has no page of its own (``mechscope.models``) is documented
        # here: its module target and docstring head the group of names it defines.
        own_module = any(inspect.ismodule(obj) and obj.__name__ == origin for _, obj in members)
        if origin != namespace and origin not in documented:
            lines += [f".. rubric:: ``{origin}``", ""]
            if own_module:
                lines += [f".. automodule:: {origin}", ""]
            elif inspect.getdoc(sys.modules.get(origin)):
                lines += [f".. automodule:: {origin}", "   :no-index:", ""]
        for name, obj in members:
            full = f"{namespace}.{name}"
            if inspect.ismodule(obj) and obj.__name__ == origin and origin not in documented:
                continue  # its automodule heads the group
            # The submodule page that documents this object, for a package-level re-export.
            home = next((d for d in sorted(documented - {"mechscope"}, key=len, reverse=True)
                         if origin == d or origin.startswith(d + ".")), None)
            if inspect.ismodule(obj) or full in documented:
                # A submodule (or a name shadowing one): link to its page, no second target.
                target = obj.__name__ if inspect.ismodule(obj) else full
                what = "the module" if inspect.ismodule(obj) else (
                    f"currently bound to ``{getattr(obj, '__module__', '?')}."
                    f"{getattr(obj, '__qualname__', name)}``; see the module")
                lines += [f"* ``{full}``: {what} :py:mod:`{target}` "
                          f"({_first_line(target) or 'its own page'})", ""]
            elif namespace == "mechscope" and home is not None and any(
                    getattr(import_namespace(home), n, None) is obj for n in public_names(home)):
                # A re-export of a documented submodule's name: a short entry, not a copy.
                other = next(n for n in public_names(home) if getattr(import_namespace(home), n) is obj)
                if inspect.isclass(obj):
                    lines += [f".. py:class:: {name}{_signature(obj)}"]
                    role = "class"
                elif callable(obj):
                    lines += [f".. py:function:: {name}{_signature(obj)}"]
                    role = "func"
                else:
                    lines += [f".. py:data:: {name}"]
                    role = "data"
                lines += [f"   :module: {namespace}", "", f"   The same object as :py:{role}:`{home}.{other}` (documented there);",
                          f"   importable as ``{full}`` too.", ""]
            elif inspect.isclass(obj):
                lines += [f".. autoclass:: {full}", "   :members:", "   :undoc-members:", ""]
            elif callable(obj):
                lines += [f".. autofunction:: {full}", ""]
            else:
                value = repr(obj)
                if len(value) > 200:
                    value = value[:197] + "..."
                lines += [f".. py:data:: {name}", f"   :module: {namespace}", f"   :value: {value}", ""]
                lines += _indent(attr_doc(origin, name) or [f"(``{type(obj).__name__}``)"])
                lines += [""]
    if not groups and namespace == "mechscope" and rest:
        lines += ["(Every package-level name is on one of the area pages above.)", ""]
    return lines


def setup(app: Any) -> dict[str, Any]:
    from docutils import nodes
    from docutils.parsers.rst import directives
    from docutils.statemachine import StringList
    from sphinx.util import logging
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.nodes import nested_parse_with_titles

    logger = logging.getLogger(__name__)

    class MechscopeApi(SphinxDirective):
        required_arguments = 1
        option_spec = {"prefix": directives.unchanged, "rest": directives.flag}

        def run(self) -> list[Any]:
            namespace = self.arguments[0]
            try:
                rst = generate(namespace, prefix=self.options.get("prefix"),
                               rest="rest" in self.options,
                               prefixes=claimed_prefixes(self.env.srcdir))
            except Exception as exc:  # a broken import must show up as a warning, not a crash
                logger.warning("mechscope-api %s: %s: %s", namespace, type(exc).__name__, exc,
                               location=self.get_location())
                return []
            for name in {namespace} | {m for m in sys.modules if m.startswith(namespace + ".")}:
                path = getattr(sys.modules.get(name), "__file__", None)
                if path:
                    self.env.note_dependency(path)
            container = nodes.container()
            nested_parse_with_titles(self.state, StringList(rst, source=f"<mechscope-api {namespace}>"),
                                     container)
            return container.children

    class SiteLink(SphinxDirective):
        def run(self) -> list[Any]:
            url = self.config.mechscope_site_url
            index = (Path(self.env.app.outdir) / url).resolve()
            para = nodes.paragraph()
            para += nodes.Text("The executed tutorial notebooks (widgets drawn offline) are a "
                               "separate site: ")
            para += nodes.reference("", "notebooks site", refuri=url)
            para += nodes.Text(f" ({url}, built by \"make site\" into build/site/; open it from "
                               "disk, no server needed).")
            out: list[Any] = [para]
            if not index.is_file():
                logger.info("mechscope: the notebooks site %s is not built (make site)", index)
                note = nodes.warning()
                note += nodes.paragraph(text=(
                    f"The notebooks site was not there when this reference was built ({url} "
                    "relative to this page). Run \"make site\" (it executes every notebook, a few "
                    "minutes) and the link works; \"make docs\" does not build it."))
                out.append(note)
            return out

    app.add_config_value("mechscope_site_url", "../site/index.html", "html")
    app.add_directive("mechscope-api", MechscopeApi)
    app.add_directive("mechscope-site-link", SiteLink)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
