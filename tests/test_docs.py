"""The docs say true things about the code: every test they cite exists (and is marked **full**
exactly when it is), the demo takes the same time wherever it is stated, and the README's file
tree lists exactly the files in git.

    .venv/bin/python -m pytest tests/test_docs.py -q
    .venv/bin/python tests/test_docs.py --sync-tree     # rewrite the README tree after adding files
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# `tests/test_x.py::test_name[case]`, or `::test_name` continuing the file cited before it
CITE = re.compile(r"(tests/[\w/]+\.py)?::(\w+)(\[[^\]`]*\])?")


def _tests_in(path: Path) -> dict[str, bool | None]:
    """Test function name -> marked `full` (True), not (False), or only some params (None)."""
    tree = ast.parse(path.read_text())
    module_full = any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
                      and "full" in ast.unparse(n.value) for n in tree.body)
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            decos = [ast.unparse(d) for d in node.decorator_list]
            full = module_full or any(d == "pytest.mark.full" for d in decos)
            out[node.name] = None if not full and any("pytest.mark.full" in d for d in decos) else full
    return out


def citations() -> list[tuple[str, int, str, str, str, bool]]:
    """(doc, line, file, test, param, claimed_full) for every cited test."""
    found = []
    for doc in DOCS:
        header: list[str] = []
        lines = doc.read_text().splitlines()
        for n, line in enumerate(lines, 1):
            cells = line.split("|") if line.lstrip().startswith("|") else [line]
            if len(cells) > 1 and n < len(lines) and re.match(r"^\|[-| :]+\|$", lines[n].strip()):
                header = cells
            elif len(cells) == 1:
                header = []
            for i, cell in enumerate(cells):
                current, after_previous = None, 0
                for m in CITE.finditer(cell):
                    current = m.group(1) or current
                    if current is None:
                        raise AssertionError(f"{doc.name}:{n}: `::{m.group(2)}` without a test file before it")
                    # **full** written just before this citation, or over its whole table column
                    claimed = "**full**" in cell[after_previous:m.start()] or (i < len(header) and "**full**" in header[i])
                    after_previous = m.end()
                    found.append((doc.name, n, current, m.group(2), (m.group(3) or "")[1:-1], claimed))
    return found


def citation_problems(cites) -> list[str]:
    problems = []
    for doc, n, file, name, param, claimed_full in cites:
        path = REPO / file
        if not path.is_file():
            problems.append(f"{doc}:{n}: {file} does not exist")
            continue
        tests = _tests_in(path)
        if name not in tests:
            problems.append(f"{doc}:{n}: {file} has no test {name}")
            continue
        if param and not param.startswith("<") and f'"{param}"' not in path.read_text():
            problems.append(f"{doc}:{n}: {file}::{name} has no case {param!r}")
        if tests[name] is not None and tests[name] != claimed_full:
            problems.append(f"{doc}:{n}: {name} is {'' if tests[name] else 'not '}marked full, the docs say "
                            f"{'it is' if claimed_full else 'it is in the default suite'}")
    return problems


def test_every_cited_test_exists_and_is_marked_as_the_docs_say():
    cites = citations()
    assert len(cites) >= 20, "the citation pattern no longer matches the docs"
    problems = citation_problems(cites)
    assert not problems, "\n".join(problems)


def test_a_wrong_citation_is_caught(tmp_path, monkeypatch):
    """The check above can fail: a renamed test, a missing case and a wrongly marked test."""
    doc = tmp_path / "x.md"
    doc.write_text("| what | test | long (**full**) |\n|---|---|---|\n"
                   "| a | `tests/test_docs.py::test_no_such_test`, `::test_readme_tree_lists_exactly_the_files_in_git[x-y]`; "
                   "**full** `::test_docs_cite_tests` | `tests/test_docs.py::test_a_wrong_citation_is_caught` |\n")
    monkeypatch.setattr(sys.modules[__name__], "DOCS", [doc])
    problems = citation_problems(citations())
    assert len(problems) == 4, problems
    assert "no test test_no_such_test" in problems[0] and "no case 'x-y'" in problems[1]
    assert "no test test_docs_cite_tests" in problems[2] and "is not marked full" in problems[3]


def test_the_demo_takes_the_same_time_everywhere():
    """Measured 6.9-7.1 min from fresh clones on 2 cores (commit b21999e); every mention agrees."""
    import yaml

    said = []
    for path in (REPO / "README.md", REPO / "Makefile"):
        for line in path.read_text().splitlines():
            if "make demo" in line or "`make demo`" in line:
                said += [(path.name, m) for m in re.findall(r"~\s*(\d+(?:[-–]\d+)?)\s*min", line)]
    desc = yaml.safe_load((REPO / "lib" / "profiles" / "local.yaml").read_text())["description"]
    said += [("local.yaml", m) for m in re.findall(r"(\d+(?:[-–]\d+)?)\s*min", desc)]
    assert len(said) >= 3, said
    assert len({m for _, m in said}) == 1, f"the demo's duration differs: {said}"


# ------------------------------------------------------------------------------- README tree
TREE = re.compile(r"(<!-- tree:start -->\n```\n)(.*?)(```\n<!-- tree:end -->)", re.S)
WIDTH = 47


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return sorted(p for p in out.splitlines() if (REPO / p).is_file())


def tree_entries(readme: str) -> dict[str, str]:
    block = TREE.search(readme)
    assert block, "README.md lost its <!-- tree:start --> ... <!-- tree:end --> block"
    return {line[:WIDTH].strip(): line[WIDTH:].strip() for line in block.group(2).splitlines() if line.strip()}


def _describe(path: str) -> str:
    """A new file's line: its docstring's first line, a YAML description, or its kind."""
    p = REPO / path
    text = p.read_text(errors="replace")
    if p.suffix == ".py":
        doc = ast.get_docstring(ast.parse(text)) or ""
        return _sentence(doc.strip().split("\n\n")[0]) if doc.strip() else "(undocumented module)"
    if p.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
        if isinstance(data, dict) and isinstance(data.get("description"), str):
            return _sentence(data["description"])
        comments = [ln.lstrip("# ") for ln in text.splitlines() if ln.startswith("#")]
        if comments:
            return _sentence(comments[0])
    if p.suffix == ".ipynb":
        import nbformat

        first = nbformat.read(p, as_version=4).cells[0].source.splitlines()[0]
        return "notebook: " + first.lstrip("# ").split("·")[-1].strip()
    return p.suffix.lstrip(".") + " file"


def _sentence(text: str, limit: int = 110) -> str:
    first = re.split(r"(?<=[.!?])\s", " ".join(text.split()))[0].rstrip(".")
    return first if len(first) <= limit else first[: limit - 1].rsplit(" ", 1)[0] + "…"


def sync_tree() -> list[str]:
    """Rewrite the README block: keep every existing description, add new files, drop gone ones."""
    readme = (REPO / "README.md").read_text()
    old = tree_entries(readme)
    lines = [f"{p:<{WIDTH}}{old.get(p) or _describe(p)}" for p in tracked_files()]
    (REPO / "README.md").write_text(TREE.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(3), readme))
    return sorted(set(tracked_files()) ^ set(old))


def test_readme_tree_lists_exactly_the_files_in_git():
    entries = tree_entries((REPO / "README.md").read_text())
    files = tracked_files()
    missing, gone = sorted(set(files) - set(entries)), sorted(set(entries) - set(files))
    assert not missing and not gone, (f"README tree: not listed {missing}, listed but not in git {gone}: "
                                      f"run `.venv/bin/python tests/test_docs.py --sync-tree` and check the new lines")
    assert all(entries.values()), [p for p, d in entries.items() if not d]


if __name__ == "__main__":
    if sys.argv[1:] != ["--sync-tree"]:
        sys.exit("usage: python tests/test_docs.py --sync-tree")
    print("\n".join(sync_tree()) or "README tree already in sync")
