"""Code size rule (CONTRIBUTING: modules small enough to read in one sitting): no function over
150 lines, in TypeScript (js/**/*.ts) or Python (src/mechscope/**/*.py), and no Python module
over 500 lines. A failure names the offender and its size.

TypeScript is measured by a small scanner, not a parser: strings, template literals, comments
and regular expressions are blanked, braces are matched, and a ``{`` opens a function body when
it follows ``=>``, a ``function`` header, or a method / constructor header (``name(...)`` with
an optional return type). A function's size is its body's lines, nested functions included, so
a long ``render`` closure counts as one long function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 150
MAX_MODULE_LINES = 500

TS_FILES = sorted((ROOT / "js").rglob("*.ts"))
PY_FILES = sorted((ROOT / "src" / "mechscope").rglob("*.py"))

_REGEX_BEFORE = set("(,=:[!&|?{};+-*%<>~^") | {""}
_REGEX_KEYWORDS = {"return", "typeof", "case", "do", "else", "in", "of", "void", "yield", "await"}
_CONTROL = {"if", "for", "while", "switch", "catch", "with", "return", "typeof", "new", "await"}
_MODIFIERS = r"(?:(?:public|private|protected|readonly|static|async|override|get|set|export|default)\s+)*"
_METHOD = re.compile(r"^\s*" + _MODIFIERS + r"(?P<name>[A-Za-z_$][\w$]*)\s*(?:<[^()]*>)?\s*\(.*\)\s*(?::.*)?$", re.S)
_FUNCTION = re.compile(r"\bfunction\b\s*\*?\s*(?P<name>[A-Za-z_$][\w$]*)?")


def mask_ts(src: str) -> str:
    """``src`` with the contents of strings, template literals (not their ``${}`` code),
    comments and regular expression literals replaced by spaces; newlines kept."""
    out = list(src)
    n = len(src)

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    def template(k: int) -> tuple[int, bool]:
        """Scan template text from ``k`` (after a backtick or a ``${}``'s ``}``) to its end or
        its next ``${``: (where code resumes, whether a ``${`` opened)."""
        start = k
        while k < n:
            if src[k] == "\\":
                k += 2
            elif src[k] == "`":
                blank(start, k)
                return k + 1, False
            elif src.startswith("${", k):
                blank(start, k)
                return k + 2, True
            else:
                k += 1
        blank(start, n)
        return n, False

    depth: list[int] = []  # brace depth inside each open ``${``
    last = ""  # the last code token (a ``/`` after an operator or keyword starts a regex)
    i = 0
    while i < n:
        ch = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            blank(i, j)
            i = j
        elif ch in "'\"":
            j = i + 1
            while j < n and src[j] not in (ch, "\n"):
                j += 2 if src[j] == "\\" else 1
            blank(i + 1, j)
            i, last = j + 1, "str"
        elif ch == "`" or (ch == "}" and depth and depth[-1] == 0):
            if ch == "}":
                depth.pop()
            i, opened = template(i + 1)
            if opened:
                depth.append(0)
            last = "str"
        elif ch == "/" and (last in _REGEX_BEFORE or last in _REGEX_KEYWORDS):
            j, in_class = i + 1, False
            while j < n and src[j] != "\n" and (in_class or src[j] != "/"):
                if src[j] == "\\":
                    j += 1
                elif src[j] in "[]":
                    in_class = src[j] == "["
                j += 1
            blank(i + 1, j)
            i, last = j + 1, "regex"
        elif ch.isspace():
            i += 1
        else:
            if depth and ch in "{}":
                depth[-1] += 1 if ch == "{" else -1
            m = re.match(r"[A-Za-z_$][\w$]*|\d[\w.]*", src[i:i + 64])
            last = m.group(0) if m else ch
            i += len(last)
    return "".join(out)


def _header(code: str, brace: int, opener_of: dict[int, int]) -> str:
    """The code before the ``{`` at ``brace`` back to the previous statement boundary at the
    same depth (skipping a return type written as an object type ``{ ... }``)."""
    k = brace - 1
    depth = 0
    while k >= 0:
        ch = code[k]
        angle = ch in "<>" and (code[k - 1].isalnum() or code[k - 1] in "_$>])\"'") and code[k + 1] != "="
        if ch in ")]" or (ch == ">" and angle):
            depth += 1
        elif ch in "([" or (ch == "<" and angle):
            if depth == 0:
                break
            depth -= 1
        elif ch == "}":
            if depth == 0:
                start = opener_of.get(k, -1)
                if start < 0 or not code[:start].rstrip().endswith(":"):
                    break
                k = start  # an object return type, ``): { x: number } {``
        elif ch == "{" or (ch in ";," and depth == 0):
            if depth == 0:
                break
        k -= 1
    return code[k + 1:brace]


def ts_functions(src: str) -> list[tuple[str, int, int]]:
    """(name, first line, lines) of every function body in TypeScript ``src``."""
    code = mask_ts(src)
    pairs: dict[int, int] = {}
    opener_of: dict[int, int] = {}
    open_stack: list[int] = []
    for k, ch in enumerate(code):
        if ch == "{":
            open_stack.append(k)
        elif ch == "}" and open_stack:
            a = open_stack.pop()
            pairs[a] = k
            opener_of[k] = a
    found = []
    for a, b in pairs.items():
        before = code[:a].rstrip()
        name = None
        if before.endswith((":", "$")):
            continue  # an object type, ``x: { ... }``, or a template literal's ``${ ... }``
        if before.endswith("=>"):
            m = re.search(r"([A-Za-z_$][\w$]*)\s*(?::[^=]*)?=\s*(?:async\s*)?(?:\([^()]*\)|[A-Za-z_$][\w$]*)[^=]*=>$",
                          before[-400:])
            name = m.group(1) if m else "(arrow)"
        else:
            head = _header(code, a, opener_of)
            fm = _FUNCTION.search(head)
            mm = _METHOD.match(head)
            if fm:
                name = fm.group("name") or "(function)"
            elif mm and mm.group("name") not in _CONTROL:
                name = mm.group("name")
        if name is not None:
            line = code.count("\n", 0, a) + 1
            found.append((name, line, code.count("\n", a, b) + 1))
    return found


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_scanner_finds_functions_and_their_sizes() -> None:
    src = """
const CSS = `.a { color: red; } ${"}"} .b {`;
const re = /[{]}/g; // a { in a comment
function outer({ a, b }: { a: number; b: string }): () => void {
  const f = (x: number): number => {
    return x + 1;
  };
  return () => {};
}
class View {
  private readonly m = new Map<string, string>();
  constructor(private readonly el: HTMLElement) {
    if (el) {
      el.textContent = "}";
    }
  }
  private box(r: number): { x: number; y: number } {
    return { x: r, y: r };
  }
  get size(): number {
    return 1;
  }
}
"""
    got = {(name, lines) for name, _line, lines in ts_functions(src)}
    assert got == {("outer", 6), ("f", 3), ("(arrow)", 1), ("constructor", 5), ("box", 3), ("size", 3)}, got


@pytest.mark.parametrize("path", TS_FILES, ids=_rel)
def test_typescript_functions_are_short(path: Path) -> None:
    long = [(name, line, lines) for name, line, lines in ts_functions(path.read_text(encoding="utf-8"))
            if lines > MAX_FUNCTION_LINES]
    assert not long, "; ".join(
        f"{_rel(path)}:{line}: function {name} is {lines} lines (at most {MAX_FUNCTION_LINES}): split it"
        for name, line, lines in long)


@pytest.mark.parametrize("path", PY_FILES, ids=_rel)
def test_python_functions_and_modules_are_short(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    n = len(text.splitlines())
    assert n <= MAX_MODULE_LINES, f"{_rel(path)} is {n} lines (at most {MAX_MODULE_LINES}): split the module"
    long = [node for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno is not None and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, "; ".join(
        f"{_rel(path)}:{node.lineno}: function {node.name} is {node.end_lineno - node.lineno + 1} lines "  # type: ignore[operator]
        f"(at most {MAX_FUNCTION_LINES}): split it" for node in long)
