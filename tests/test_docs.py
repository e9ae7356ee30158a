"""The docs say true things about the code: every test they cite exists (and is marked **full**
exactly when it is); every path, `python -m` module, `lib.x` name and `make` target they name
exists; docs/architecture.md lists exactly the modules of lib/ (and what each owns exists);
the README lists every notebook, no notebook draws its own picture, the demo takes the same time
wherever it is stated, and the README's file tree lists exactly the files in git, each once.

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


# ------------------------------------------------------------------------- names the docs use
# A repository path (`lib/core/files.py`, `sky/*.yaml`, `lib/recipes/`), a module run with
# `python -m`, a dotted `lib.x.y[.name]`, and a `make` target inside code (`make demo`).
PATH = re.compile(r"(?<![\w./-])((?:lib|tests|bench|sky|notebooks|docs)/[\w./*<>{}-]*)")
RUN_MODULE = re.compile(r"python -m (lib(?:\.\w+)+)")
DOTTED = re.compile(r"(?<![\w./-])(lib(?:\.\w+)+)")
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
MAKE = re.compile(r"\bmake ([a-z][\w-]*)")


def doc_references(docs=None) -> list[tuple[str, int, str, str]]:
    """(doc, line, kind, name) for every path, module, dotted name and make target in the docs."""
    found = []
    for doc in docs or DOCS:
        text = doc.read_text()
        line_of = lambda pos: text.count("\n", 0, pos) + 1  # noqa: E731
        for kind, pattern in (("path", PATH), ("module", RUN_MODULE), ("name", DOTTED)):
            found += [(doc.name, line_of(m.start()), kind, m.group(1).rstrip(".")) for m in pattern.finditer(text)]
        for span in CODE.finditer(text):
            found += [(doc.name, line_of(span.start() + m.start()), "make", m.group(1))
                      for m in MAKE.finditer(span.group(0))]
    return found


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+)\s*:(?!=)", (REPO / "Makefile").read_text(), re.M))


def module_file(dotted: str) -> Path | None:
    """lib.a.b -> lib/a/b.py or lib/a/b/ (a package), if it exists."""
    base = REPO.joinpath(*dotted.split("."))
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else base if (base / "__init__.py").is_file() \
        else None


def top_level_names(path: Path) -> set[str]:
    """Functions, classes, assignments and imports at the top of a module (or its package __init__)."""
    tree = ast.parse((path / "__init__.py" if path.is_dir() else path).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            names |= {t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                      if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def reference_problem(kind: str, name: str) -> str | None:
    if kind == "path":
        if "<" in name or "{" in name:
            return None  # a placeholder: runs/<id>, sky/<task>.yaml
        if "*" in name:
            return None if list(REPO.glob(name)) else "matches no file"
        return None if (REPO / name).exists() else "does not exist"
    if kind == "module":
        base = REPO.joinpath(*name.split("."))
        return None if base.with_suffix(".py").is_file() or (base / "__main__.py").is_file() else \
            "is no module that `python -m` can run"
    if kind == "make":
        return None if name in make_targets() else "is no target in the Makefile"
    parts = name.split(".")  # a dotted name: the longest module prefix, then a name defined in it
    for i in range(len(parts), 1, -1):
        path = module_file(".".join(parts[:i]))
        if path is not None:
            rest = parts[i:]
            if not rest or rest[0] in top_level_names(path) or module_file(".".join(parts[:i + 1])):
                return None
            return f"{'.'.join(parts[:i])} defines no {rest[0]}"
    return "is no module of lib/"


def reference_problems(refs) -> list[str]:
    return [f"{doc}:{n}: {kind} `{name}` {why}" for doc, n, kind, name in refs
            if (why := reference_problem(kind, name))]


def test_every_path_module_and_make_target_the_docs_name_exists():
    refs = doc_references()
    kinds = {kind for *_, kind, _ in refs}
    assert kinds == {"path", "module", "name", "make"} and len(refs) > 300, (kinds, len(refs))
    problems = reference_problems(refs)
    assert not problems, "\n".join(problems)


def test_a_wrong_reference_is_caught(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("See lib/core/nothing.py and `sky/*.txt`; run `python -m lib.budget` (fine) or\n"
                   "`python -m lib.core` (a package without __main__.py) or `python -m lib.nothing`, call lib.core.files.no_such_function (lib.core.files.read_json is\n"
                   "fine), then `make deploy`. To make sure nothing is caught twice: lib/core/files.py, `make test`.\n")
    problems = reference_problems(doc_references([doc]))
    assert [p.split(": ", 1)[1] for p in problems] == [
        "path `lib/core/nothing.py` does not exist", "path `sky/*.txt` matches no file",
        "module `lib.core` is no module that `python -m` can run",
        "module `lib.nothing` is no module that `python -m` can run",
        "name `lib.nothing` is no module of lib/", "name `lib.core.files.no_such_function` "
        "lib.core.files defines no no_such_function", "make `deploy` is no target in the Makefile"], problems


# ----------------------------------------------------------------- docs/architecture.md modules
ARCH = REPO / "docs" / "architecture.md"


def lib_modules() -> set[str]:
    """Every module of lib/: its .py files (a package's __init__.py as the package, `lib/x/`)."""
    out = set()
    for p in (REPO / "lib").rglob("*.py"):
        rel = p.relative_to(REPO).as_posix()
        out.add(rel[: -len("__init__.py")] if p.name == "__init__.py" else rel)
    return out - {"lib/"}


def module_rows(text: str) -> list[tuple[str, str]]:
    """(module, owns) for each row of the tables under '## Modules' whose first cell is a lib/ path."""
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in section.splitlines() if line.startswith("| `lib/")]
    return [(cells[0].strip("`"), cells[1]) for cells in rows]


def architecture_problems(text: str) -> list[str]:
    listed = [m for m, _ in module_rows(text)]
    problems = [f"docs/architecture.md lists {m} twice" for m in sorted({m for m in listed if listed.count(m) > 1})]
    problems += [f"docs/architecture.md does not list {m}" for m in sorted(lib_modules() - set(listed))]
    problems += [f"docs/architecture.md lists {m}, which is gone" for m in sorted(set(listed) - lib_modules())]
    for module, owns in module_rows(text):
        if not module.endswith(".py") or not (REPO / module).is_file():
            continue
        names = top_level_names(REPO / module)
        for span in re.findall(r"`([^`]+)`", owns):
            name = re.match(r"[A-Za-z_]\w*", span)
            if name and " " not in span and name.group(0) not in names and not (
                    span[name.end():].startswith("*") and any(n.startswith(name.group(0)) for n in names)):
                problems.append(f"docs/architecture.md: {module} owns `{span}`, which it does not define")
    return problems


def test_architecture_lists_every_module_of_lib_once_and_what_each_owns_exists():
    assert len(module_rows(ARCH.read_text())) > 100
    problems = architecture_problems(ARCH.read_text())
    assert not problems, "\n".join(problems)


def test_a_missing_gone_or_wrong_module_row_is_caught():
    text = ARCH.read_text()
    text = re.sub(r"^\| `lib/serve/local\.py` .*\n", "", text, flags=re.M)  # a module left out
    text = text.replace("| `lib/serve/chat.py` | `ChatModel`,", "| `lib/serve/chat.py` | `Chatbot`,")  # renamed
    text = text.replace("\n### Cloud", "\n| `lib/launch/gone.py` | `x` | removed |\n\n### Cloud")
    assert architecture_problems(text) == [
        "docs/architecture.md does not list lib/serve/local.py",
        "docs/architecture.md lists lib/launch/gone.py, which is gone",
        "docs/architecture.md: lib/serve/chat.py owns `Chatbot`, which it does not define"]


# --------------------------------------------------------------------------------- notebooks
def readme_notebook_rows(readme: str) -> list[str]:
    """The notebooks named in the first column of the table under README's '## The notebooks'."""
    section = readme.split("\n## The notebooks\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(\d\d_\w+)` \|", section, re.M)


def notebook_table_problems(readme: str) -> list[str]:
    rows, notebooks = readme_notebook_rows(readme), sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
    return ([f"README's notebook table lacks {n}" for n in notebooks if n not in rows]
            + [f"README's notebook table lists {n}, which is not in notebooks/" for n in rows if n not in notebooks]
            + ([] if rows == sorted(rows) else ["README's notebook table is out of order"]))


def test_readme_notebook_table_lists_every_notebook():
    assert len(readme_notebook_rows((REPO / "README.md").read_text())) >= 7
    problems = notebook_table_problems((REPO / "README.md").read_text())
    assert not problems, "\n".join(problems)


def test_a_missing_notebook_row_is_caught():
    readme = re.sub(r"^\| `07_review` \|.*\n", "", (REPO / "README.md").read_text(), flags=re.M)
    assert notebook_table_problems(readme.replace("| `06_serve` |", "| `06_chat` |")) == [
        "README's notebook table lacks 06_serve", "README's notebook table lacks 07_review",
        "README's notebook table lists 06_chat, which is not in notebooks/"]


# The README: "Every picture is drawn in `lib/`" (a lib function returns a Figure, the notebook
# saves and shows it with lib/core/figures.py).
DRAWS = re.compile(r"\bmatplotlib\b|\bplt\.|\.subplots\(|\.savefig\(")


def notebooks_drawing(sources: dict[str, list[str]]) -> list[str]:
    return [f"{nb} cell {i} draws: {DRAWS.search(src).group(0)!r}" for nb, cells in sources.items()
            for i, src in enumerate(cells) if DRAWS.search(src)]


def test_no_notebook_draws_its_own_picture():
    import nbformat

    sources = {p.name: [c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"]
               for p in sorted((REPO / "notebooks").glob("*.ipynb"))}
    assert len(sources) >= 7 and any("save(" in s for cells in sources.values() for s in cells)
    assert notebooks_drawing(sources) == []
    assert notebooks_drawing({"x.ipynb": ["x = 1", "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()"]}) == \
        ["x.ipynb cell 1 draws: 'matplotlib'"]

# ------------------------------------------------------------------------------- README tree
TREE = re.compile(r"(<!-- tree:start -->\n```\n)(.*?)(```\n<!-- tree:end -->)", re.S)
WIDTH = 47


def tracked_files(repo: Path = REPO) -> list[str]:
    """Each file in git once. `git ls-files` lists a file with a merge conflict once per stage
    (base, ours, theirs): a --sync-tree run in the middle of a merge once wrote README.md,
    requirements.txt and tests/test_notebooks_lab.py into the tree three times each."""
    out = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout
    return sorted({p for p in out.splitlines() if (repo / p).is_file()})


def tree_lines(readme: str) -> list[tuple[str, str]]:
    """(path, description) for each line of the README tree, in order, duplicates kept."""
    block = TREE.search(readme)
    assert block, "README.md lost its <!-- tree:start --> ... <!-- tree:end --> block"
    return [(line[:WIDTH].strip(), line[WIDTH:].strip()) for line in block.group(2).splitlines() if line.strip()]


def tree_entries(readme: str) -> dict[str, str]:
    return dict(tree_lines(readme))


def tree_duplicates(readme: str) -> list[str]:
    paths = [p for p, _ in tree_lines(readme)]
    return sorted({p for p in paths if paths.count(p) > 1})


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
    assert tree_duplicates((REPO / "README.md").read_text()) == [], "README tree lists a file more than once"


def test_a_file_listed_twice_in_the_tree_is_caught():
    lines = [f"{p:<{WIDTH}}{d}" for p in ("Makefile", "README.md", "README.md", "requirements.txt") for d in ["x"]]
    readme = "<!-- tree:start -->\n```\n" + "\n".join(lines) + "\n```\n<!-- tree:end -->\n"
    assert tree_duplicates(readme) == ["README.md"] and len(tree_entries(readme)) == 3


def test_a_file_in_a_merge_conflict_is_one_file(tmp_path):
    """The cause of the tree's duplicates, in a real repository: a conflicted file, listed once."""
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=False,
                       capture_output=True)

    git("init", "-q", "-b", "main")
    for branch, text in (("main", "a"), ("other", "b"), ("main", "c")):
        git("checkout", "-q", "-B", branch) if branch == "other" else git("checkout", "-q", branch)
        (tmp_path / "README.md").write_text(text)
        git("add", "README.md")
        git("commit", "-q", "-m", text)
    git("merge", "-q", "other")
    raw = subprocess.run(["git", "ls-files"], cwd=tmp_path, capture_output=True, text=True).stdout.split()
    assert raw == ["README.md"] * 3  # git's own listing during the conflict
    assert tracked_files(tmp_path) == ["README.md"]


if __name__ == "__main__":
    if sys.argv[1:] != ["--sync-tree"]:
        sys.exit("usage: python tests/test_docs.py --sync-tree")
    print("\n".join(sync_tree()) or "README tree already in sync")
