import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from arc25.augment import Augmentation, all_dihedral, shuffled_train
from arc25.tasks import load_tasks
from helpers import EVAL_2025, EVAL_2025_SOLUTIONS

grids = st.tuples(st.integers(1, 30), st.integers(1, 30)).flatmap(
    lambda shape: arrays(np.int64, shape, elements=st.integers(0, 9)))
augmentations = st.builds(
    Augmentation, st.booleans(), st.integers(0, 3),
    st.permutations(list(range(10))).map(tuple))


@settings(max_examples=300, deadline=None)
@given(grids, augmentations)
def test_invert_is_exact_inverse(grid, aug):
    out = aug.apply(grid)
    assert out.shape in (grid.shape, grid.shape[::-1])
    back = aug.invert(out)
    assert back.shape == grid.shape and np.array_equal(back, grid)


@settings(max_examples=100, deadline=None)
@given(grids, st.integers(0, 2**31))
def test_random_augmentation_round_trip(grid, seed):
    aug = Augmentation.random(random.Random(seed))
    assert np.array_equal(aug.invert(aug.apply(grid)), grid)
    assert Augmentation.from_dict(aug.to_dict()) == aug


def test_eight_distinct_dihedral_transforms():
    grid = np.arange(6).reshape(2, 3)
    results = {a.apply(grid).tobytes() + bytes(a.apply(grid).shape) for a in all_dihedral()}
    assert len(results) == 8


def test_semantics_flip_then_rotate_then_recolour():
    grid = np.array([[1, 2], [3, 4]])
    assert np.array_equal(Augmentation(flip=True).apply(grid), [[2, 1], [4, 3]])
    assert np.array_equal(Augmentation(rotations=1).apply(grid), np.rot90(grid))
    colors = (0, 2, 1, 3, 4, 5, 6, 7, 8, 9)
    assert np.array_equal(Augmentation(colors=colors).apply(grid), [[2, 1], [3, 4]])


def test_seeded_and_reproducible():
    a = [Augmentation.random(random.Random(7)) for _ in range(2)]
    assert a[0] == a[1]
    many = {Augmentation.random(random.Random(s)) for s in range(200)}
    assert len(many) > 150


def test_keep_black_probability():
    rng = random.Random(0)
    kept = sum(Augmentation.random(rng, keep_black_p=0.9).colors[0] == 0 for _ in range(4000))
    # 0.9 plus the 1/10 chance a full shuffle leaves black in place: 0.91
    assert 0.88 < kept / 4000 < 0.94
    rng = random.Random(0)
    assert all(Augmentation.random(rng, keep_black_p=1.0).colors[0] == 0 for _ in range(200))


def test_whole_task_augmented_and_inverted():
    task = load_tasks(EVAL_2025, EVAL_2025_SOLUTIONS)["0934a4d8"]
    aug = Augmentation(True, 3, (0, 9, 8, 7, 6, 5, 4, 3, 2, 1))
    shown = aug.apply_task(task)
    for ex, orig in zip(shown.train, task.train):
        assert np.array_equal(aug.invert(ex.input), orig.input)
        assert np.array_equal(aug.invert(ex.output), orig.output)
    assert np.array_equal(aug.invert(shown.test_outputs[0]), task.test_outputs[0])


def test_shuffled_train_is_a_permutation():
    task = load_tasks(EVAL_2025)["0934a4d8"]
    shuffled = shuffled_train(task, random.Random(1))
    assert sorted(ex.input.tobytes() for ex in shuffled.train) == sorted(ex.input.tobytes() for ex in task.train)
