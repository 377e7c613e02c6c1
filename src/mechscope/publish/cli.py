"""``python -m mechscope.publish``: the command line of `mechscope.publish`."""

from __future__ import annotations

import argparse
import sys

from ..errors import MechscopeError
from .page import publish, publish_notebook, strip_widget_state
from .site import publish_site


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Errors are printed to stderr as ``error: ...`` with status 1.

    >>> import nbformat, tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "nb.ipynb"
    >>> nbformat.write(nbformat.v4.new_notebook(), path)
    >>> main(["--strip-widget-state", str(path)])
    /...nb.ipynb: no widget state stored
    0
    >>> main(["--no-execute", str(path), str(path.with_suffix(".html"))])
    wrote /...nb.html (... MB, 0 widget(s), ... s)
    0
    >>> main(["--no-execute", "--notebook", str(path), str(path.with_name("published.ipynb"))])
    wrote /...published.ipynb: 0 snapshot(s) made from stored widget state
    0
    >>> main(["--no-execute", str(path.with_name("missing.ipynb")), "out.html"])
    1
    """
    parser = argparse.ArgumentParser(
        prog="python -m mechscope.publish",
        description="Execute a notebook and export it as one offline HTML page, or several "
                    "notebooks as a folder of pages with an index (--site).",
        usage="%(prog)s [--no-execute] [--timeout S] NOTEBOOK OUTPUT.html\n"
              "       %(prog)s [--no-execute] [--timeout S] --site DIR NOTEBOOK [NOTEBOOK ...]\n"
              "       %(prog)s [--no-execute] [--timeout S] --notebook NOTEBOOK OUTPUT.ipynb\n"
              "       %(prog)s --strip-widget-state NOTEBOOK [NOTEBOOK ...]",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="NOTEBOOK OUTPUT.html; with --site, the notebooks (or folders of them)")
    parser.add_argument("--site", metavar="DIR",
                        help="write one page per notebook and DIR/index.html")
    parser.add_argument("--notebook", action="store_true",
                        help="write the published notebook (OUTPUT.ipynb: offline snapshots, no "
                             "widget views or stored state) instead of an HTML page")
    parser.add_argument("--no-execute", action="store_true",
                        help="export the outputs saved in the notebook(s) without running them")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    parser.add_argument("--strip-widget-state", action="store_true",
                        help="remove stored widget state from the notebooks in place (for nbviewer "
                             "and stock nbconvert, which then show the offline snapshots made "
                             "from it)")
    args = parser.parse_args(argv)
    if args.strip_widget_state:
        try:
            for path in args.paths:
                saved = strip_widget_state(path)
                print(f"{path}: " + (f"snapshots made, widget state removed ({saved / 1e6:.2f} MB)"
                                     if saved else "no widget state stored"))
        except MechscopeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.site is None and len(args.paths) != 2:
        parser.error("give NOTEBOOK and OUTPUT.html, or --site DIR followed by the notebooks")
    try:
        if args.notebook:
            lines = [f"wrote {args.paths[1]}: " + publish_notebook(
                args.paths[0], args.paths[1], execute=not args.no_execute, timeout=args.timeout).line()]
        elif args.site is not None:
            lines = publish_site(args.paths, args.site, execute=not args.no_execute,
                                 timeout=args.timeout).lines()
        else:
            lines = publish(args.paths[0], args.paths[1], execute=not args.no_execute,
                            timeout=args.timeout).lines()
    except MechscopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
