"""mechscope.publish on small throwaway notebooks: its errors, --no-execute, and the CLI.

(The full tour, opened offline in Chromium, is tests/browser/test_demo_export.py.)
"""

from __future__ import annotations

import nbformat
import pytest

from mechscope.errors import MechscopeError
from mechscope.publish import main, publish

pytestmark = pytest.mark.timeout(300)


def notebook(path, *sources: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t")] + [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_missing_notebook(tmp_path):
    with pytest.raises(MechscopeError, match=r"notebook not found: .*nope\.ipynb"):
        publish(tmp_path / "nope.ipynb", tmp_path / "out.html")
    assert not (tmp_path / "out.html").exists()


def test_unreadable_notebook(tmp_path):
    (tmp_path / "bad.ipynb").write_text("{not json", encoding="utf-8")
    with pytest.raises(MechscopeError, match=r"cannot read notebook .*bad\.ipynb"):
        publish(tmp_path / "bad.ipynb", tmp_path / "out.html", execute=False)


def test_failing_cell_is_named(tmp_path):
    nb = notebook(tmp_path / "fails.ipynb", "x = 1", "y = x / 0", "print('never')")
    with pytest.raises(MechscopeError) as info:
        publish(nb, tmp_path / "out.html", progress=False)
    message = str(info.value)
    assert "cell 2 failed with ZeroDivisionError: division by zero" in message
    assert "y = x / 0" in message
    assert "\x1b[" not in message  # no terminal colour codes
    assert not (tmp_path / "out.html").exists()


def test_cwd_is_the_notebook_folder_and_cli_prints_report(tmp_path, capsys):
    (tmp_path / "data.txt").write_text("hello from the notebook folder", encoding="utf-8")
    nb = notebook(tmp_path / "ok.ipynb", "print(open('data.txt').read())")
    out = tmp_path / "site" / "ok.html"
    assert main([str(nb), str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith(f"wrote {out} (")
    assert "[1/1] cell 1" in printed.err  # one progress line per code cell
    page = out.read_text(encoding="utf-8")
    assert "hello from the notebook folder" in page
    assert "<script src" not in page


def test_cli_error_exit_code(tmp_path, capsys):
    assert main([str(tmp_path / "nope.ipynb"), str(tmp_path / "o.html")]) == 1
    assert "error: notebook not found" in capsys.readouterr().err


def test_no_execute_keeps_saved_outputs(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("never run")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="saved output\n")]
    nb.cells = [cell]
    nbformat.write(nb, tmp_path / "saved.ipynb")
    report = publish(tmp_path / "saved.ipynb", tmp_path / "saved.html", execute=False)
    assert "saved output" in report.output.read_text(encoding="utf-8")
    assert report.widgets == () and report.remote_refs == ()


def test_export_html_of_an_executed_notebook(tmp_path):
    """`mechscope.export_html` re-runs nothing and keeps each widget's offline snapshot."""
    import nbclient

    import mechscope

    src = notebook(tmp_path / "run.ipynb",
                   "import numpy as np\nfrom mechscope.widgets import Heatmap\n"
                   "Heatmap(np.arange(12.0).reshape(3, 4), title='saved heatmap')",
                   "import random\nprint('draw', random.random())")
    nb = nbformat.read(src, as_version=4)
    nbclient.NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, src)
    printed = nb.cells[2].outputs[0]["text"]
    report = mechscope.export_html(src, tmp_path / "out.html")
    page = report.output.read_text(encoding="utf-8")
    assert printed in page  # the saved output, not a re-run (which would print another number)
    assert [w.kind for w in report.widgets] == ["heatmap"] and report.widgets[0].snapshot
    assert "saved heatmap" in report.widgets[0].summary
    assert report.remote_refs == ()


# ---- publish_site: several notebooks and an index page ------------------------------------------
def saved(path, title, text):
    """A notebook with a '# title' heading and one code cell, its output saved."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(f"print({text.strip()!r})")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nintro"), cell]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_site_writes_pages_index_and_back_links(tmp_path, capsys):
    from mechscope.publish import main as cli

    saved(tmp_path / "b_second.ipynb", "Second <b>one</b>", "out two\n")
    saved(tmp_path / "a first.ipynb", "First", "out one\n")
    assert cli(["--no-execute", "--site", str(tmp_path / "site"), str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {tmp_path / 'site' / 'index.html'} and 2 page(s)")
    assert "a first.html: First (0 widget(s)" in lines[1]
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    # folder order (sorted), relative and quoted links, titles escaped, no script
    assert index.index('href="a%20first.html"') < index.index('href="b_second.html"')
    assert "Second &lt;b&gt;one&lt;/b&gt;" in index and "<b>one" not in index
    assert "<script" not in index and "//" not in index.replace("<!doctype", "")
    page = (tmp_path / "site" / "a first.html").read_text(encoding="utf-8")
    assert "out one" in page and '<a href="index.html">' in page
    assert "<title>First</title>" in page


def test_site_errors_name_the_notebook(tmp_path):
    from mechscope.publish import publish_site

    with pytest.raises(MechscopeError, match="no notebooks to publish"):
        publish_site(tmp_path, tmp_path / "site", execute=False)
    (tmp_path / "x").mkdir()
    saved(tmp_path / "t.ipynb", "T", "1\n")
    saved(tmp_path / "x" / "t.ipynb", "T", "1\n")
    with pytest.raises(MechscopeError, match=r"would both be written to t\.html"):
        publish_site([tmp_path / "t.ipynb", tmp_path / "x" / "t.ipynb"], tmp_path / "s",
                     execute=False)
    bad = notebook(tmp_path / "bad.ipynb", "1 / 0")
    with pytest.raises(MechscopeError, match=r"bad\.ipynb: cell 1 failed with ZeroDivisionError"):
        publish_site([tmp_path / "t.ipynb", bad], tmp_path / "s2", progress=False)
    assert not (tmp_path / "s2" / "index.html").exists()  # no index for a half-built site


def test_cli_needs_two_paths_without_site(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.ipynb")])
    assert "give NOTEBOOK and OUTPUT.html" in capsys.readouterr().err
