"""Metrics against matrices computed by hand."""
import numpy as np
import pytest

from cfutils import metrics

# After T1: 0.9 on T1. After T2: T1 dropped to 0.6, T2 0.8. After T3: T1 0.5, T2 0.7, T3 0.95.
R = np.array([[0.9, 0.2, 0.1],
              [0.6, 0.8, 0.3],
              [0.5, 0.7, 0.95]])
B = np.array([0.1, 0.1, 0.2])


def test_acc():
    assert metrics.acc(R) == pytest.approx((0.5 + 0.7 + 0.95) / 3)


def test_bwt():
    assert metrics.bwt(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)


def test_fwt_uses_random_init_baseline():
    assert metrics.fwt(R, B) == pytest.approx(((0.2 - 0.1) + (0.3 - 0.2)) / 2)


def test_forgetting_best_vs_just_trained():
    R2 = np.array([[0.5, 0.0, 0.0], [0.8, 0.9, 0.0], [0.4, 0.6, 0.9]])  # T1 peaked after T2
    assert metrics.forgetting(R2, "best") == pytest.approx(((0.8 - 0.4) + (0.9 - 0.6)) / 2)
    assert metrics.forgetting(R2, "just_trained") == pytest.approx(((0.5 - 0.4) + (0.9 - 0.6)) / 2)
    assert metrics.forgetting(R2, "just_trained") == pytest.approx(-metrics.bwt(R2))


def test_summary_keys_and_single_task():
    assert set(metrics.summary(R, B)) == {"ACC", "BWT", "FWT", "forgetting"}
    one = np.array([[0.7]])
    assert metrics.summary(one, np.array([0.1])) == {"ACC": 0.7, "BWT": 0.0, "FWT": 0.0, "forgetting": 0.0}


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), np.zeros(3), np.zeros((0, 0))])
def test_rejects_non_square(bad):
    with pytest.raises(ValueError, match="square"):
        metrics.acc(bad)


def test_rejects_bad_reference_and_baseline():
    with pytest.raises(ValueError, match="reference"):
        metrics.forgetting(R, "worst")
    with pytest.raises(ValueError, match="random_init"):
        metrics.fwt(R, np.zeros(2))


def test_forgetting_ignores_accuracy_before_a_task_was_learned():
    R = np.array([[0.9, 0.7, 0.1], [0.3, 0.5, 0.1], [0.2, 0.4, 0.8]])   # task 2 scored 0.7 before it was learned
    np.testing.assert_allclose(metrics.forgetting_per_task(R), [0.9 - 0.2, 0.5 - 0.4])
