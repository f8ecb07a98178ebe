"""The trainer: learns, records the accuracy matrix and curves, is deterministic, and calls the hooks in order."""
import numpy as np
import pytest
import torch

from cfutils.data import split_stream
from cfutils.methods import Joint, Method, Naive
from cfutils.models import MLP, MultiHeadMLP, n_parameters
from cfutils.repro import seed_everything
from cfutils.train import evaluate, train


def run(tiny, method, scenario="class", **kw):
    g = seed_everything(0)
    model = MLP(64, (32,), 10)
    return train(method, model, split_stream(tiny, 5, scenario), lr=0.3, batch_size=16, generator=g, **kw), model


def test_learns_each_task_and_fills_the_matrix(tiny):
    res, _ = run(tiny, Naive(), epochs=5)
    assert res.R.shape == (5, 5)
    assert np.all(np.diag(res.R) > 0.9)
    assert res.R[-1, 0] < 0.5                 # class-IL fine-tuning forgets the first task
    assert res.samples == 5 * 400 and len(res.boundaries) == 5 and res.boundaries[-1] == len(res.losses)


def test_task_il_masks_to_the_task_head(tiny):
    res, _ = run(tiny, Naive(), scenario="task", epochs=3)
    assert res.summary()["ACC"] > 0.9


def test_joint_is_the_upper_bound(tiny):
    naive, _ = run(tiny, Naive(), epochs=5)
    joint, _ = run(tiny, Joint(), epochs=5)
    assert joint.summary()["ACC"] > naive.summary()["ACC"] + 0.15


def test_two_identical_runs_are_identical(tiny):
    a, ma = run(tiny, Naive(), eval_every=5)
    b, mb = run(tiny, Naive(), eval_every=5)
    assert np.array_equal(a.R, b.R) and a.losses == b.losses and np.array_equal(a.curves, b.curves)
    assert all(torch.equal(p, q) for p, q in zip(ma.parameters(), mb.parameters()))


def test_curves_and_random_init(tiny):
    res, _ = run(tiny, Naive(), eval_every=4)
    assert res.steps[0] == 0 and res.curves.shape == (len(res.steps), 5)
    assert np.array_equal(res.curves[0], res.random_init)


def test_hooks_are_called_in_order(tiny):
    class Recorder(Method):
        name = "recorder"

        def __init__(self):
            self.calls = []

        def before_task(self, model, task):
            self.calls.append(("before", task.index))

        def after_backward(self, model):
            assert all(p.grad is not None for p in model.parameters())
            self.calls.append("backward")

        def after_step(self, model):
            self.calls.append("step")

        def after_task(self, model, task):
            self.calls.append(("after", task.index))

    rec = Recorder()
    run(tiny, rec)
    per_task = -(-80 // 16)
    assert rec.calls[0] == ("before", 0) and rec.calls[-1] == ("after", 4)
    assert rec.calls.count("backward") == rec.calls.count("step") == 5 * per_task


@pytest.mark.parametrize(("kw", "word"), [({"lr": -1.0}, "lr"), ({"epochs": 0}, "epochs"),
                                          ({"optimizer": "rmsprop"}, "optimizer"), ({"batch_size": 0}, "batch_size")])
def test_bad_arguments_fail_fast(tiny, kw, word):
    settings = {"lr": 0.1, "batch_size": 16, **kw}
    with pytest.raises(ValueError, match=word):
        train(Naive(), MLP(64, (32,), 10), split_stream(tiny, 5), **settings)


def test_multihead_model_matches_the_stream(tiny):
    g = seed_everything(0)
    model = MultiHeadMLP(64, (32,), head_sizes=(2,) * 5)
    res = train(Naive(), model, split_stream(tiny, 5, "task"), lr=0.3, batch_size=16, epochs=3, generator=g)
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert res.summary()["ACC"] > 0.9
    assert n_parameters(model) == 64 * 32 + 32 + 5 * (32 * 2 + 2)


def test_evaluate_on_a_subset_of_tasks(tiny):
    s = split_stream(tiny, 5, "class")
    m = Naive()
    m.setup(MLP(64, (32,), 10), s)
    assert evaluate(m, MLP(64, (32,), 10), s.tasks[:2]).shape == (2,)


class Interrupt(Exception):
    pass


def test_checkpoint_resumes_an_interrupted_run_exactly(tiny, tmp_path):
    ckpt = tmp_path / "run.pt"
    full, full_model = run(tiny, Naive(), eval_every=7)

    def crash_in_task_4(step, model):
        if step == full.boundaries[2] + 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(tiny, Naive(), eval_every=7, checkpoint=ckpt, on_step=crash_in_task_4)
    assert ckpt.exists()
    g = seed_everything(0)
    model = MLP(64, (32,), 10)
    resumed = train(Naive(), model, split_stream(tiny, 5), lr=0.3, batch_size=16, generator=g, eval_every=7,
                    checkpoint=ckpt)
    assert np.array_equal(resumed.R, full.R) and resumed.losses == full.losses and resumed.steps == full.steps
    assert np.array_equal(resumed.curves, full.curves)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), full_model.parameters()))


def test_checkpoint_of_another_run_is_refused(tiny, tmp_path):
    ckpt = tmp_path / "run.pt"
    run(tiny, Naive(), checkpoint=ckpt)
    with pytest.raises(ValueError, match="another run"):
        run(tiny, Naive(), checkpoint=ckpt, epochs=2)
    ckpt.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot be read"):
        run(tiny, Naive(), checkpoint=ckpt)


class NaNAtStep(Method):
    """Fine-tuning whose loss becomes NaN at a given step (counted from 1)."""

    name = "nan_at_step"

    def __init__(self, step: int):
        self.step, self.seen = step, 0

    def loss(self, model, x, y, t):
        self.seen += 1
        loss = super().loss(model, x, y, t)
        return loss * float("nan") if self.seen >= self.step else loss


@pytest.mark.parametrize("bad_step", [7, 60])  # inside the first check window, and after one check
def test_divergence_stops_at_the_first_non_finite_loss_and_saves_nothing(tiny, tmp_path, bad_step):
    from cfutils.train import DivergenceError

    checkpoint = tmp_path / "ckpt.pt"
    with pytest.raises(DivergenceError, match=rf"nan_at_step diverged: loss nan at step {bad_step} "
                                              rf"\(task \d, lr 0.3\)"):
        run(tiny, NaNAtStep(bad_step), epochs=5, checkpoint=checkpoint)
    assert not checkpoint.exists() or bad_step > 25  # 25 steps per task: task 1 ended cleanly for step 60


def test_stop_after_trains_only_the_first_tasks(tiny):
    res, _ = run(tiny, Naive(), stop_after=2)
    full, _ = run(tiny, Naive())
    np.testing.assert_array_equal(res.R[:2], full.R[:2])
    assert not res.R[2:].any() and len(res.boundaries) == 2


def test_first_lr_sets_only_the_first_tasks_learning_rate(tiny):
    same, _ = run(tiny, Naive(), first_lr=0.3)
    plain, _ = run(tiny, Naive())
    slow, _ = run(tiny, Naive(), first_lr=0.003)
    np.testing.assert_array_equal(same.R, plain.R)
    assert slow.R[0, 0] < plain.R[0, 0] - 0.3 and slow.travel[0] < plain.travel[0] / 10


def test_travel_is_the_distance_moved_during_each_task(tiny):
    from torch.nn.utils import parameters_to_vector as flat

    g = seed_everything(0)
    model = MLP(64, (32,), 10)
    start = flat(model.parameters()).detach().clone()
    res = train(Naive(), model, split_stream(tiny, 5, "class"), lr=0.3, batch_size=16, generator=g, stop_after=1)
    assert res.travel == pytest.approx([float((flat(model.parameters()).detach() - start).norm())])


def test_active_classes_leave_the_units_of_unseen_classes_untouched(tiny):
    g = seed_everything(0)
    model = MLP(64, (32,), 10)
    head = model.head.weight.detach().clone()
    stream = split_stream(tiny, 5, "class")
    res = train(Naive(active_classes=True), model, stream, lr=0.3, batch_size=16, generator=g, stop_after=1)
    unseen = [c for task in stream.tasks[1:] for c in task.classes]
    assert torch.equal(model.head.weight[unseen], head[unseen])
    assert not torch.equal(model.head.weight[list(stream[0].classes)], head[list(stream[0].classes)])
    assert res.R[0, 0] > 0.9
    with pytest.raises(ValueError, match="active_classes"):
        Naive(active_classes="yes")
