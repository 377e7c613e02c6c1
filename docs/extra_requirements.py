"""Print the ``docs`` extra of pyproject.toml, one requirement a line (``make docs`` installs it).

Reads the extra without installing mechscope again (an editable reinstall would rebuild the JS),
on any Python the project supports (tomllib is 3.11+; 3.10 falls back to a literal parse).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path


def docs_requirements(pyproject: Path) -> list[str]:
    text = pyproject.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        match = re.search(r"^docs\s*=\s*(\[.*?\])", text, re.M | re.S)
        if match is None:
            raise SystemExit(f"{pyproject}: no docs = [...] extra") from None
        return list(ast.literal_eval(match.group(1)))
    return list(tomllib.loads(text)["project"]["optional-dependencies"]["docs"])


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]
    print("\n".join(docs_requirements(root / "pyproject.toml")))
