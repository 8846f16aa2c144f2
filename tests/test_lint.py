"""The code's static checks, run with the tests so CI keeps them: ruff (pyproject.toml's rules) and the package
layers as import-linter contracts (pyproject.toml; ../shared/STYLE.md: geometry at the bottom, nothing below
imports evaluation, lightning_modules or the entry points, models do not import data)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # ruff and lint-imports are installed beside this interpreter
PACKAGES = ("geometry", "utils", "data", "models", "losses", "evaluation", "lightning_modules", "benchmarks")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          check=False)


def test_ruff_passes():
    run = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stdout + run.stderr


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
    """README's Layout section is where a newcomer looks for a stage: every file it names is there, and each
    module of the packages it lists is listed (a moved or new module updates it)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Layout"):readme.index("\n## ", readme.index("## Layout") + 1)]
    named = set(re.findall(r"`([\w/]+\.py)", section))
    assert named and not [path for path in named if not (ROOT / path).is_file()]
    table = section[section.index("```"):section.rindex("```")]
    for package in ("geometry", "data", "losses", "evaluation", "lightning_modules", "utils"):
        start = table.index(f"\n{package}/")
        entry = re.split(r"\n(?=\S)", table[start + 1:])[0]  # the package's lines, up to the next folder
        modules = {path.stem for path in (ROOT / package).glob("*.py") if path.stem != "__init__"}
        missing = sorted(module for module in modules if not re.search(rf"\b{module}\b", entry))
        assert not missing, f"README's layout does not list {package}/ {missing}"


def test_the_readme_counts_the_fault_cases_it_names():
    """README's guarantees section gives the number of fault cases and the files that hold them: the number is
    what pytest collects from those files."""
    section = (ROOT / "README.md").read_text().split("## Bad input, full disks and run folders")[1].split("\n## ")[0]
    stated = int(re.search(r"(\d+) fault cases", section).group(1))
    patterns = re.findall(r"`(tests/[\w/*]+\.py)`", section)
    files = sorted({str(path.relative_to(ROOT)) for pattern in patterns for path in ROOT.glob(pattern)})
    assert len(files) >= 5, files
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0", *files], cwd=ROOT,
                               capture_output=True, text=True)
    counted = re.search(r"(\d+) tests? collected", collected.stdout)
    assert counted, collected.stdout[-2000:] + collected.stderr[-2000:]
    assert stated == int(counted.group(1)), f"README says {stated} fault cases; {files} hold {counted.group(1)}"
