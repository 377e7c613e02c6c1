"""`publish_site`: several notebooks as a folder of offline pages plus an ``index.html``."""

from __future__ import annotations

import dataclasses
import html
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import MechscopeError
from .page import PublishReport, notebook_title, publish

_NAV = ('<nav class="mechscope-site-nav" style="font:14px sans-serif;padding:8px 16px;'
        'border-bottom:1px solid #ddd"><a href="index.html">&larr; all notebooks</a></nav>')
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


@dataclass(frozen=True)
class SitePage:
    """One notebook of a site: where it came from, its page, its title and its publish report.

    >>> from mechscope.publish import PublishReport
    >>> report = PublishReport(Path("site/01 tour.html"), 2_000, 1.0, (), 0, ())
    >>> page = SitePage(notebook=Path("notebooks/01 tour.ipynb"), title="Tour", report=report)
    >>> page.href                                   # relative, URL-quoted
    '01%20tour.html'
    """

    notebook: Path
    title: str
    report: PublishReport

    @property
    def href(self) -> str:
        """The page's link from ``index.html`` (relative: the site can move as a whole)."""
        from urllib.parse import quote

        return quote(self.report.output.name)


@dataclass(frozen=True)
class SiteReport:
    """What :func:`publish_site` wrote: ``index`` and one page per notebook, in order.

    >>> from mechscope.publish import PublishReport
    >>> report = PublishReport(Path("site/tour.html"), 2_000_000, 1.0, (), 0, ())
    >>> site = SiteReport(Path("site"), Path("site/index.html"),
    ...                   (SitePage(Path("notebooks/tour.ipynb"), "Tour", report),), seconds=3.0)
    >>> for line in site.lines():
    ...     print(line)
    wrote site/index.html and 1 page(s), 0 widget(s) in all (3.0 s)
      tour.html: Tour (0 widget(s), 2.00 MB, 1.0 s)
    """

    out_dir: Path
    index: Path
    pages: tuple[SitePage, ...]
    seconds: float

    @property
    def n_widgets(self) -> int:
        return sum(len(p.report.widgets) for p in self.pages)

    def lines(self) -> list[str]:
        out = [f"wrote {self.index} and {len(self.pages)} page(s), {self.n_widgets} widget(s) in "
               f"all ({self.seconds:.1f} s)"]
        for page in self.pages:
            r = page.report
            out.append(f"  {r.output.name}: {page.title} ({len(r.widgets)} widget(s), "
                       f"{r.size_bytes / 1e6:.2f} MB, {r.seconds:.1f} s)")
            out += [f"    warning: {w.line()}" for w in r.widgets if not w.snapshot]
            out += [f"    warning: the page references {url}: it needs the network there"
                    for url in r.remote_refs]
        return out


def _site_notebooks(notebooks: Any) -> list[Path]:
    """Notebook paths in order; a folder stands for the ``*.ipynb`` files in it, sorted."""
    if isinstance(notebooks, str | os.PathLike):
        notebooks = [notebooks]
    paths: list[Path] = []
    for item in notebooks:
        path = Path(item)
        paths += sorted(path.glob("*.ipynb")) if path.is_dir() else [path]
    if not paths:
        raise MechscopeError("no notebooks to publish: give .ipynb files or a folder holding some.")
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            raise MechscopeError(f"{stems[path.stem]} and {path} would both be written to "
                                 f"{path.stem}.html; rename one.")
        stems[path.stem] = path
    return paths


def _index_html(pages: tuple[SitePage, ...]) -> str:
    """A plain, script-free page listing every notebook page (relative links)."""
    from .. import __version__

    rows = []
    for number, page in enumerate(pages, 1):
        kinds = sorted({w.kind for w in page.report.widgets if w.kind})
        widgets = f"{len(page.report.widgets)}" + (f" ({', '.join(kinds)})" if kinds else "")
        rows.append(
            f'<tr><td>{number}</td><td><a href="{html.escape(page.href)}">{html.escape(page.title)}'
            f"</a><div class=\"src\">{html.escape(page.notebook.name)}</div></td>"
            f"<td>{html.escape(widgets)}</td>"
            f"<td>{page.report.size_bytes / 1e6:.1f} MB</td></tr>"
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>mechscope notebooks</title><style>"
        "body{font:15px/1.5 system-ui,sans-serif;max-width:920px;margin:32px auto;padding:0 16px;"
        "color:#222}table{border-collapse:collapse;width:100%}th,td{text-align:left;"
        "padding:8px;border-bottom:1px solid #ddd;vertical-align:top}td:last-child{white-space:nowrap}.src{color:#777;"
        "font-size:13px;font-family:monospace}</style></head><body>"
        "<h1>mechscope notebooks</h1>"
        "<p>Each page is an executed notebook. Its widgets draw from snapshots inside the page: "
        "no kernel, no network; hover and click work, re-running the model does not.</p>"
        "<table><thead><tr><th>#</th><th>notebook</th><th>widgets</th><th>size</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"<p class=\"src\">built with mechscope {html.escape(__version__)}</p></body></html>\n"
    )


def publish_site(notebooks: Any, out_dir: str | os.PathLike[str], execute: bool = True, *,
                 timeout: int = 900, progress: TextIO | bool = True) -> SiteReport:
    """Publish several notebooks into ``out_dir``: one offline page each, plus ``index.html``.

    ``notebooks`` is a list of .ipynb paths, or a folder (its ``*.ipynb``, sorted). Each is
    executed in turn (one kernel at a time) and written with :func:`publish` to
    ``out_dir/<notebook name>.html``, with a link back to the index at the top; with
    ``execute=False`` the saved outputs are exported as they are. ``index.html`` lists the pages
    with their titles (first ``# heading``), widget counts and sizes, linked relatively, so the
    folder can be copied or served anywhere. Raises :class:`MechscopeError` naming the notebook
    and cell when one fails; the index is then not written.

    Example (what ``make html`` runs)::

        report = publish_site(sorted(Path("notebooks").glob("*.ipynb")), "build/site")
        print("\\n".join(report.lines()))

    Two notebooks written here, exported without executing:

    >>> import nbformat, tempfile
    >>> from nbformat.v4 import new_markdown_cell, new_notebook
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name, title in (("01_intro", "# Intro"), ("02_more", "# More")):
    ...     nbformat.write(new_notebook(cells=[new_markdown_cell(title)]), folder / f"{name}.ipynb")
    >>> site = publish_site(folder, folder / "site", execute=False, progress=False)
    >>> [(p.title, p.href) for p in site.pages]
    [('Intro', '01_intro.html'), ('More', '02_more.html')]
    >>> 'href="02_more.html"' in site.index.read_text()
    True
    """
    import nbformat

    began = time.perf_counter()
    stream = sys.stderr if progress is True else progress or None
    paths = _site_notebooks(notebooks)
    dest = Path(out_dir)
    pages: list[SitePage] = []
    for number, path in enumerate(paths, 1):
        if stream is not None:
            print(f"[{number}/{len(paths)}] {path}", file=stream, flush=True)
        try:
            report = publish(path, dest / f"{path.stem}.html", execute=execute, timeout=timeout,
                             progress=stream if stream is not None else False)
        except MechscopeError as exc:
            raise MechscopeError(f"{path}: {exc}") from exc
        page = report.output.read_text(encoding="utf-8")
        page = _BODY.sub(lambda m: m.group(0) + _NAV, page, count=1)
        report.output.write_text(page, encoding="utf-8")
        report = dataclasses.replace(report, size_bytes=report.output.stat().st_size)
        title = notebook_title(nbformat.read(path, as_version=4), path.stem)
        pages.append(SitePage(notebook=path, title=title, report=report))
    index = dest / "index.html"
    dest.mkdir(parents=True, exist_ok=True)
    index.write_text(_index_html(tuple(pages)), encoding="utf-8")
    return SiteReport(out_dir=dest, index=index, pages=tuple(pages),
                      seconds=time.perf_counter() - began)
