"""Scene-balanced sampling: per-scene counts, determinism, reshuffling, and disjoint DDP shards."""

from collections import Counter
from pathlib import Path

import pytest

from data.megadepth import MegaDepthConfig, MegaDepthPairs
from data.sampling import SceneBalancedSampler

SCENES = [list(range(0, 10)), list(range(10, 13)), list(range(13, 40))]  # 10, 3 and 27 pairs


def scene_of(index: int) -> int:
    return next(k for k, scene in enumerate(SCENES) if index in scene)


def test_every_scene_gives_the_same_number_of_pairs():
    drawn = list(SceneBalancedSampler(SCENES, samples_per_scene=5, seed=0))
    assert len(drawn) == 15
    assert Counter(scene_of(i) for i in drawn) == {0: 5, 1: 5, 2: 5}
    assert len({i for i in drawn if scene_of(i) == 0}) == 5  # enough pairs: no repeats
    assert {i for i in drawn if scene_of(i) == 1} <= set(SCENES[1])  # too few: drawn with replacement


def test_seeded_and_reshuffled_each_epoch():
    sampler, twin = SceneBalancedSampler(SCENES, 5, seed=1), SceneBalancedSampler(SCENES, 5, seed=1)
    first = list(sampler)
    assert first == list(twin)
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(SceneBalancedSampler(SCENES, 5, seed=2)) != first


@pytest.mark.parametrize("replicas", [2, 4])
def test_ranks_get_disjoint_equal_shards_of_the_same_draw(replicas):
    whole = list(SceneBalancedSampler(SCENES, 5, seed=3))
    shards = [list(SceneBalancedSampler(SCENES, 5, seed=3, num_replicas=replicas, rank=r)) for r in range(replicas)]
    assert len({len(shard) for shard in shards}) == 1
    positions = sorted(p for r in range(replicas) for p in range(r, len(shards[0]) * replicas, replicas))
    assert positions == list(range(len(shards[0]) * replicas))
    interleaved = [shards[p % replicas][p // replicas] for p in range(len(whole))]
    assert interleaved == whole  # together the ranks see exactly the single-process draw


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty scenes: \\[1\\]"):
        SceneBalancedSampler([[0], []], 2)
    with pytest.raises(ValueError, match="rank 2"):
        SceneBalancedSampler(SCENES, 2, num_replicas=2, rank=2)


def test_megadepth_scenes_feed_the_sampler(tmp_path):
    folder = (
        Path(__file__).resolve().parents[3]
        / "shared"
        / "data"
        / "loftr_test_indices"
        / "megadepth_test_1500_scene_info"
    )
    if not folder.exists():
        pytest.skip("MegaDepth-1500 indices not here")
    dataset = MegaDepthPairs(
        MegaDepthConfig(root=str(tmp_path), scene_info=tuple(sorted(map(str, folder.glob("*.npz")))))
    )
    groups = dataset.scene_indices()
    assert [len(g) for g in groups] == [300] * 5
    drawn = list(SceneBalancedSampler(groups, samples_per_scene=20))
    assert Counter(dataset.pairs[i][0] for i in drawn) == dict.fromkeys(range(5), 20)


def test_resume_skips_the_drawn_indices_once():
    whole = list(SceneBalancedSampler(SCENES, 5, seed=4, num_replicas=2, rank=1))
    sampler = SceneBalancedSampler(SCENES, 5, seed=4, num_replicas=2, rank=1)
    sampler.resume(epoch=0, position=3)
    sampler.set_epoch(0)  # Lightning sets the same epoch again: the position holds
    assert len(sampler) == len(whole) and list(sampler) == whole[3:]
    assert list(sampler) == whole  # the next pass is a whole epoch
    sampler.resume(epoch=0, position=2)
    sampler.set_epoch(1)  # a new epoch starts at its beginning
    twin = SceneBalancedSampler(SCENES, 5, seed=4, num_replicas=2, rank=1)
    twin.set_epoch(1)
    assert list(sampler) == list(twin)
    with pytest.raises(ValueError, match="position 9"):
        sampler.resume(0, 9)
