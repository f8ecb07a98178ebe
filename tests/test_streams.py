"""Task streams: the right classes, sizes, heads and transformations."""
import pytest
import torch

from cfutils.data import permuted_stream, rotated_stream, split_stream


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_split_stream_classes_and_sizes(tiny, scenario):
    s = split_stream(tiny, n_tasks=5, scenario=scenario)
    assert len(s) == 5 and s.scenario == scenario
    for t, task in enumerate(s):
        assert task.classes == (2 * t, 2 * t + 1)
        assert set(task.y_train.tolist()) == set(task.classes)
        assert task.n_train == 80 and len(task.y_test) == 20
        assert task.columns == (task.classes if scenario == "task" else tuple(range(10)))
    masks = s.masks
    assert masks.shape == (5, 10)
    assert masks.sum().item() == (10 if scenario == "task" else 50)


def test_split_stream_class_order_and_bad_input(tiny):
    s = split_stream(tiny, n_tasks=2, class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert s[0].classes == (9, 8, 7, 6, 5)
    with pytest.raises(ValueError, match="n_tasks"):
        split_stream(tiny, n_tasks=3)
    with pytest.raises(ValueError, match="n_tasks"):
        split_stream(tiny, n_tasks=0)
    with pytest.raises(ValueError, match="class_order"):
        split_stream(tiny, n_tasks=2, class_order=[0] * 10)
    with pytest.raises(ValueError, match="scenario"):
        split_stream(tiny, n_tasks=2, scenario="domain")


def test_permuted_stream_is_a_fixed_pixel_permutation(tiny):
    s = permuted_stream(tiny, n_tasks=3, fraction=1.0, seed=1)
    assert s.scenario == "domain" and len(s) == 3
    assert torch.equal(s[0].x_train, tiny.x_train)
    flat0, flat1 = s[0].x_train.flatten(1), s[1].x_train.flatten(1)
    assert not torch.equal(flat0, flat1)
    # the same permutation for every image: sorted pixel values per image are unchanged
    assert torch.equal(flat0.sort(1).values, flat1.sort(1).values)
    assert torch.equal(s[1].y_train, tiny.y_train)


def test_permuted_fraction_zero_repeats_the_task(tiny):
    s = permuted_stream(tiny, n_tasks=2, fraction=0.0)
    assert torch.equal(s[0].x_train, s[1].x_train)
    with pytest.raises(ValueError, match="fraction"):
        permuted_stream(tiny, n_tasks=2, fraction=1.5)


def test_rotated_stream(tiny):
    s = rotated_stream(tiny, angles=(0, 90))
    assert torch.allclose(s[1].x_train, torch.rot90(s[0].x_train, k=1, dims=(2, 3)), atol=1e-5)


def test_stratified_subset_is_balanced(tiny):
    sub = tiny.subset(50, 20, torch.Generator().manual_seed(0))
    assert len(sub.y_train) == 50 and torch.bincount(sub.y_train).tolist() == [5] * 10
    assert len(sub.y_test) == 20
