"""The synthetic world a training run reads, made when it is absent or was made with other settings.

    ensure_world(WorldSettings(generate=True, root="data/world", scenes=8, test_scenes=3))

What made the world on disk is its manifest (world.json, data/synthetic/manifest.py): the same settings find
it as it is, any other setting generates it again.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from pytorch_lightning.utilities.rank_zero import rank_zero_only

from .manifest import read_world_manifest, world_manifest
from .trees import write_world
from .world import WorldConfig, check_image_size


@dataclass
class WorldSettings:
    """The synthetic world the `synthetic` data reads; generated at `root` when absent and `generate`."""

    generate: bool = False
    root: str = "data/world"
    scenes: int = 6
    test_scenes: int = 1  # the last scenes; the one before them validates, the rest train
    cameras: int = 20
    size: tuple[int, int] = (640, 480)  # (width, height)
    textures: str = "mixed"
    seed: int = 0


class WorldGenerationError(RuntimeError):
    """The world could not be generated: settings it cannot be made with, a folder of other data (never written
    over: data/synthetic/trees.py) or in the way of its files, a full disk."""


def ensure_world(world: WorldSettings) -> None:
    """Generate the synthetic world at `world.root` (flat layout) unless the world there was made with exactly
    these settings (its world.json: layout, scenes, test scenes, cameras, size, textures, seed). Under torchrun
    or SLURM every process runs this: the global rank 0 (Lightning's, read from RANK, LOCAL_RANK or
    SLURM_PROCID before a trainer exists) generates, the others wait for its manifest. WorldGenerationError,
    naming the folder and the reason, when it cannot be made."""
    root = Path(world.root)
    wanted = world_manifest("flat", world.scenes, world.test_scenes, world.cameras, world.size, world.textures,
                            world.seed)
    found = read_world_manifest(root)
    if not world.generate or found == wanted:
        return
    if rank_zero_only.rank != 0:
        while read_world_manifest(root) != wanted:
            time.sleep(1)
        return
    if found is not None:
        changed = ", ".join(f"{key} {found.get(key)} -> {value}" for key, value in wanted.items()
                            if found.get(key) != value)
        print(f"the synthetic world in {root} was made with other settings ({changed}): generating it again ...")
    else:
        print(f"generating the synthetic world in {root} (once) ...")
    width, height = world.size
    try:
        check_image_size((width, height), "world.size")
        config = WorldConfig(num_scenes=world.scenes, cameras_per_scene=world.cameras, image_size=(width, height),
                             textures=world.textures, seed=world.seed)
        write_world(root, config, layout="flat", test_scenes=world.test_scenes, progress=True)
    except (OSError, ValueError) as error:  # data not ours or in the way, a full disk; too few scenes, bad size
        raise WorldGenerationError(f"could not generate the synthetic world in {root}: {error}") from None
