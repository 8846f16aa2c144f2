"""The code's static checks, run with the tests so CI keeps them: ruff (pyproject.toml's rules), the package
layers as import-linter contracts (pyproject.toml: geometry at the bottom, nothing below imports evaluation,
lightning_modules or the entry points, models do not import data), and the README and docs/ pages as a newcomer
reads them (a first screen that links every page, files that exist, counts that hold)."""

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # ruff and lint-imports are installed beside this interpreter
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          check=False)


def test_ruff_passes():
    run = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def imported_test_modules(path: Path) -> list[str]:
    """The test modules (test_*.py) that the Python file `path` imports, by dotted name."""
    imported = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.append(node.module)
    return [name for name in imported if name.rpartition(".")[2].startswith("test_")]


def test_no_test_module_imports_another():
    """Shared fixtures live in a conftest.py and shared helpers in tests/*helpers.py: a fixture imported from a
    test module reads as an unused name that the test's argument then redefines (ruff F401, F811)."""
    offenders = {str(path.relative_to(ROOT)): names for path in sorted((ROOT / "tests").rglob("*.py"))
                 if (names := imported_test_modules(path))}
    assert not offenders, offenders


def test_the_layers_hold():
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 2 kept, 0 broken." in run.stdout


def test_a_broken_layer_fails_the_check(tmp_path):
    """The contracts are not vacuous: on a copy of the tree, geometry importing evaluation, models importing
    data and utils importing an entry point are each reported."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "train.py", "evaluate.py", "match.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    with open(tmp_path / "geometry" / "warp.py", "a") as file:
        file.write("\nimport evaluation.metrics\n")
    with open(tmp_path / "models" / "loftr.py", "a") as file:
        file.write("\nimport data.batch\n")
    with open(tmp_path / "utils" / "files.py", "a") as file:
        file.write("\nimport train\n")
    run = lint_imports(tmp_path)
    assert run.returncode != 0
    for violation in ("geometry.warp -> evaluation.metrics", "models.loftr -> data.batch", "utils.files -> train"):
        assert violation in run.stdout, run.stdout


def test_the_layout_section_names_files_that_exist():
    """docs/architecture.md's Layout section is where a newcomer looks for a stage: every file it names is there,
    and each module of the packages it lists is listed (a moved or new module updates it)."""
    page = (ROOT / "docs" / "architecture.md").read_text()
    section = page.split("## Layout", 1)[1].split("\n## ")[0]
    named = set(re.findall(r"`([\w/]+\.py)", section))
    assert named and not [path for path in named if not (ROOT / path).is_file()]
    table = section[section.index("```"):section.rindex("```")]
    for package in ("geometry", "data", "losses", "evaluation", "lightning_modules", "utils"):
        start = table.index(f"\n{package}/")
        entry = re.split(r"\n(?=\S)", table[start + 1:])[0]  # the package's lines, up to the next folder
        modules = {path.stem for path in (ROOT / package).glob("*.py") if path.stem != "__init__"}
        missing = sorted(module for module in modules if not re.search(rf"\b{module}\b", entry))
        assert not missing, f"docs/architecture.md's layout does not list {package}/ {missing}"


def test_the_readme_counts_the_fault_cases_it_names():
    """The guarantees section (docs/evaluation.md, linked from README) gives the number of fault cases and the
    files that hold them: the number is what pytest collects from those files."""
    page = (ROOT / "docs" / "evaluation.md").read_text()
    section = page.split("## Bad input, full disks and run folders")[1].split("\n## ")[0]
    stated = int(re.search(r"(\d+) fault cases", section).group(1))
    patterns = re.findall(r"`(tests/[\w/*]+\.py)`", section)
    files = sorted({str(path.relative_to(ROOT)) for pattern in patterns for path in ROOT.glob(pattern)})
    assert len(files) >= 5, files
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", *files], cwd=ROOT,
                               capture_output=True, text=True)
    counted = re.search(r"(\d+) tests? collected", collected.stdout)
    assert counted, collected.stdout[-2000:] + collected.stderr[-2000:]
    assert stated == int(counted.group(1)), f"docs/evaluation.md: {stated} fault cases; {files} hold {counted.group(1)}"


README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
SETUP = ("python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && .venv/bin/python train.py",
         "python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt && .venv/bin/pip install --no-deps "
         "-r requirements-baselines.txt && .venv/bin/python -m pytest -q")


def test_the_readme_is_a_first_screen():
    """At most 200 lines; the two set-up commands (the main job, the tests) within the first 60, the Python
    example within the first 150."""
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines"
    for command in SETUP:
        assert command in lines, command
        assert lines.index(command) < 60, (lines.index(command) + 1, command)
    venvs = [line for line in lines if line.startswith("python3 -m venv")]
    assert venvs == list(SETUP), venvs  # exactly the two set-up commands, the main job first
    opening = lines.index("```python")
    closing = lines.index("```", opening + 1)
    assert closing < 150, f"README's Python example ends on line {closing + 1}"
    assert "load_matcher" in "\n".join(lines[opening:closing])


def test_ci_runs_the_readmes_test_command():
    """.ci/run is exactly README's second set-up command (the tests)."""
    commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and line[0] not in "#"]
    assert SETUP[1] in commands, commands


def test_the_readme_links_every_docs_page_and_every_link_resolves():
    """Each docs/*.md page is linked from README, and every relative link of README and the pages leads to a
    file of the repository."""
    readme = README.read_text()
    assert DOCS
    unlinked = [page.name for page in DOCS if f"](docs/{page.name})" not in readme]
    assert not unlinked, f"README does not link {unlinked}"
    for source in (README, *DOCS):
        for target in re.findall(r"\]\(([^)\s]+)\)", source.read_text()):
            if re.match(r"[a-z]+:", target):  # a web address
                continue
            path = (source.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{source.name} links {target}, which is not there"


def test_the_docs_stand_alone():
    """README, docs/ and benchmarks/RESULTS.md name neither issue numbers nor files outside the repository."""
    for source in (README, *DOCS, ROOT / "benchmarks" / "RESULTS.md"):
        text = source.read_text()
        issues = re.findall(r"[^\n]{0,40}\bissues? #?\d+[^\n]{0,20}", text, re.IGNORECASE)
        assert not issues, (source.name, issues)
        outside = [m for m in re.findall(r"(?:\.\./)+[\w./-]+", text)
                   if not (source.parent / m).resolve().is_relative_to(ROOT)]
        assert not outside, (source.name, outside)
