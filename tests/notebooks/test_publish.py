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
