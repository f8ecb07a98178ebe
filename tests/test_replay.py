"""Unit tests of the replay memory and the replay methods (tiny tensors, a few seconds in all)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from cfutils.data import Dataset, split_stream
from cfutils.methods import DER, VAE, Buffer, GenerativeReplay, ICaRL, Replay, herding
from cfutils.methods.buffer import eight_bit_range
from cfutils.models import MLP
from cfutils.train import train


def stream_of(n: int, width: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A stream of ``n`` samples whose single feature is their position: x[i] = i."""
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, width)
    return x, torch.arange(n) % 10, torch.zeros(n, dtype=torch.long)


@pytest.mark.parametrize("batch", [8, 64])
def test_reservoir_keeps_every_sample_with_probability_m_over_n(batch):
    n, m, trials = 120, 20, 400
    hits = torch.zeros(n)
    x, y, t = stream_of(n)
    for trial in range(trials):
        buf = Buffer(m, (4,), seed=trial)
        for i in range(0, n, batch):
            buf.add(x[i:i + batch], y[i:i + batch], t[i:i + batch])
        hits[buf.all().x[:, 0].long()] += 1
    p = m / n
    sd = math.sqrt(trials * p * (1 - p))
    assert torch.all((hits - trials * p).abs() < 5 * sd), (hits.min(), hits.max(), trials * p, sd)
    # the first and the last samples, not just the average, are kept at the right rate
    assert abs(hits[:20].mean() - trials * p) < 4 * sd / math.sqrt(20)
    assert abs(hits[-20:].mean() - trials * p) < 4 * sd / math.sqrt(20)


@pytest.mark.parametrize("capacity,batch", [(20, 7), (5, 64)])
def test_batched_reservoir_writes_what_the_sample_by_sample_algorithm_writes(capacity, batch):
    """Algorithm R one sample at a time, with the draws the buffer makes for each batch: the same
    slots end up holding the same samples (a later sample of a batch overwrites an earlier one)."""
    x, y, t = stream_of(300)
    buf, draws = Buffer(capacity, (4,), seed=3), torch.Generator().manual_seed(3)
    slots = [-1] * capacity
    for i in range(0, 300, batch):
        buf.add(x[i:i + batch], y[i:i + batch], t[i:i + batch])
        u = torch.rand(len(y[i:i + batch]), generator=draws, dtype=torch.float64).tolist()
        for n, u_n in enumerate(u, start=i):
            slot = n if n < capacity else int(u_n * (n + 1))
            if slot < capacity:
                slots[slot] = n
    assert buf.x[:, 0].long().tolist() == slots


def test_buffer_never_exceeds_capacity_and_stores_distinct_samples():
    buf = Buffer(50, (4,), n_logits=3)
    x, y, t = stream_of(1000)
    for i in range(0, 1000, 33):
        buf.add(x[i:i + 33], y[i:i + 33], t[i:i + 33], torch.randn(len(y[i:i + 33]), 3))
        assert len(buf) == min(50, i + len(y[i:i + 33]))
    kept = buf.all().x[:, 0]
    assert len(kept.unique()) == 50
    assert buf.nbytes == 50 * (4 * 4 + 8 + 8 + 3 * 4)


def test_class_balanced_buffer_gives_each_class_an_equal_share():
    buf = Buffer(60, (4,), n_classes=10, policy="class_balanced")
    x, _, t = stream_of(900)
    y = torch.cat([torch.full((300,), 0), torch.full((300,), 1), torch.full((150,), 2),
                   torch.full((150,), 3)])
    buf.add(x[:300], y[:300], t[:300])
    assert buf.group_counts()[0] == 60
    buf.add(x[300:600], y[300:600], t[300:600])
    assert buf.group_counts()[:2].tolist() == [30, 30]
    buf.add(x[600:], y[600:], t[600:])
    assert buf.group_counts()[:4].tolist() == [15, 15, 15, 15] and len(buf) == 60
    mem = buf.all()
    assert torch.equal(torch.bincount(mem.y, minlength=10), buf.group_counts())
    # each stored sample still carries its own label
    assert torch.equal(y[mem.x[:, 0].long()], mem.y)


def test_sample_draws_only_stored_rows():
    buf = Buffer(30, (4,), n_classes=10, policy="class_balanced")
    x, y, t = stream_of(25)
    buf.add(x, y, t)
    batch = buf.sample(500)
    assert set(batch.x[:, 0].long().tolist()) <= set(range(25))
    assert torch.equal(batch.y, y[batch.x[:, 0].long()])


def test_bad_buffer_size_is_named():
    with pytest.raises(ValueError, match="buffer_size"):
        Replay(buffer_size=-5)


def test_herding_first_pick_is_closest_to_the_mean():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(300, 8, generator=g)
    order = herding(f, 10)
    assert int(order[0]) == int(((f - f.mean(0)) ** 2).sum(1).argmin())
    assert len(order.unique()) == 10
    # the herded mean tracks the class mean better than the first 10 samples
    assert (f[order].mean(0) - f.mean(0)).norm() < (f[:10].mean(0) - f.mean(0)).norm()


def test_vae_loss_is_finite_and_decreases():
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    vae = VAE((1, 8, 8), hidden=32, latent=4)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = vae.loss(x)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-10:]) < 0.7 * sum(losses[:10])
    assert vae.sample(5).shape == (5, 1, 8, 8)


def tiny_stream(scenario: str):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 1, 4, 4, generator=g)
    y = torch.arange(400) % 4
    x[:, 0, 0, 0] += 3 * y  # learnable
    data = Dataset("toy", x, y, x[:80], y[:80], ("a", "b", "c", "d"))
    return split_stream(data, 2, scenario)


@pytest.mark.parametrize("scenario", ["class", "task"])
@pytest.mark.parametrize("make", [lambda: Replay(40, 16), lambda: DER(40, 16, beta=0.5),
                                  lambda: GenerativeReplay(latent=4, hidden=16, replay_batch=16),
                                  lambda: GenerativeReplay(latent=4, hidden=16, replay_batch=16,
                                                           weighting="tasks"),
                                  lambda: ICaRL(40), lambda: ICaRL(40, selection="random")])
def test_methods_run_and_beat_chance(make, scenario):
    torch.manual_seed(0)
    method = make()
    result = train(method, MLP(16, (32,), 4), tiny_stream(scenario), epochs=2, batch_size=32,
                   lr=0.05)
    assert result.R[-1].mean() > (0.5 if scenario == "task" else 0.25)
    assert method.stored_bytes() > 0


def test_task_il_replay_uses_each_sample_own_head():
    stream = tiny_stream("task")
    method = Replay(10)
    method.setup(MLP(16, (8,), 4), stream)
    out = method.logits(MLP(16, (8,), 4), torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]))
    assert torch.isfinite(out[0, :2]).all() and (out[0, 2:] < -1e30).all()
    assert torch.isfinite(out[1, 2:]).all() and (out[1, :2] < -1e30).all()


def eight_bit_stream(scenario: str = "class"):
    """A tiny learnable stream of standardised 8-bit images (as Fashion-MNIST's)."""
    g = torch.Generator().manual_seed(1)
    y = torch.arange(400) % 4
    u = torch.randint(0, 256, (400, 1, 4, 4), generator=g)
    u[:, 0, 0, 0] = 60 * y  # learnable
    x = (u.float() / 255 - 0.3) / 0.35
    return split_stream(Dataset("toy8", x, y, x[:80], y[:80], ("a", "b", "c", "d")), 2, scenario)


def test_uint8_buffer_returns_exactly_the_stored_floats_in_a_quarter_of_the_bytes():
    stream = eight_bit_stream()
    x = torch.cat([task.x_train for task in stream])
    value_range = eight_bit_range(task.x_train for task in stream)
    assert value_range == (float(x.min()), float(x.max()))
    small = Buffer(50, (1, 4, 4), value_range=value_range)
    large = Buffer(50, (1, 4, 4))
    for buf in (small, large):
        buf.add(x, torch.arange(len(x)) % 4, torch.zeros(len(x), dtype=torch.long))
    assert small.x.dtype == torch.uint8
    assert torch.equal(small.all().x, large.all().x)  # the same samples, bit for bit
    assert (large.x.nbytes, small.x.nbytes) == (50 * 16 * 4, 50 * 16)
    assert small.nbytes == large.nbytes - 50 * 16 * 3 + 256 * 4  # plus the table of 256 levels


def test_inputs_that_are_not_8_bit_are_refused_or_kept_as_float32():
    x = torch.randn(200, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert eight_bit_range([x]) is None
    buf = Buffer(10, (1, 4, 4), value_range=(float(x.min()), float(x.max())))
    with pytest.raises(ValueError, match="not 8-bit"):
        buf.add(x, torch.zeros(200, dtype=torch.long), torch.zeros(200, dtype=torch.long))


def test_uint8_storage_trains_exactly_as_float32(monkeypatch):
    def trained():
        torch.manual_seed(0)
        method = DER(30, 16, beta=0.5)
        result = train(method, MLP(16, (32,), 4), eight_bit_stream(), epochs=2, batch_size=32,
                       lr=0.05)
        return result, method

    r8, m8 = trained()
    monkeypatch.setattr("cfutils.methods.replay.eight_bit_range", lambda xs: None)
    r32, m32 = trained()
    assert m8.buffer.x.dtype == torch.uint8 and m32.buffer.x.dtype == torch.float32
    assert np.array_equal(r8.R, r32.R) and r8.losses == r32.losses
    assert m8.stored_bytes() < m32.stored_bytes()


@pytest.mark.parametrize("epochs", [1, 3])
def test_each_sample_is_offered_to_the_memory_once(epochs):
    stream = eight_bit_stream()
    method = Replay(buffer_size=1000, replay_batch=8)
    train(method, MLP(16, (8,), 4), stream, epochs=epochs, batch_size=32, lr=0.05)
    n = sum(task.n_train for task in stream)
    assert int(method.buffer.seen.sum()) == n and len(method.buffer) == n
    stored = method.buffer.all().x.flatten(1)
    assert len(torch.unique(stored, dim=0)) == n  # no duplicates, whatever the number of epochs


def test_generative_replay_weighting():
    gr = GenerativeReplay(beta=1.0, weighting="tasks")
    equal = GenerativeReplay(beta=1.0)
    for k, expected in ((2, (1.0, 1.0)), (4, (0.5, 1.5))):
        gr.task = equal.task = dataclasses.replace(tiny_stream("class")[0], index=k - 1)
        assert gr.weights() == pytest.approx(expected)
        assert equal.weights() == (1.0, 1.0)
    with pytest.raises(ValueError, match="weighting"):
        GenerativeReplay(weighting="1/t")


def test_icarl_keeps_its_exemplars_as_uint8():
    torch.manual_seed(0)
    method = ICaRL(40)
    result = train(method, MLP(16, (32,), 4), eight_bit_stream(), epochs=2, batch_size=32, lr=0.05)
    assert method.buffer.x.dtype == torch.uint8 and len(method.buffer) == 40
    assert result.R[-1].mean() > 0.25


def test_generator_snapshots_leave_the_global_random_state_alone():
    vae = VAE((1, 4, 4), hidden=8, latent=2)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = vae.sample(3, torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, vae.sample(3, torch.Generator().manual_seed(1)))


def test_records_keep_what_the_memory_holds_and_what_the_generator_draws():
    stream = eight_bit_stream()
    er = Replay(buffer_size=60, replay_batch=8)
    train(er, MLP(16, (8,), 4), stream, epochs=1, batch_size=32, lr=0.05)
    counts = er.extras()["memory_classes"]
    assert len(counts) == 4 and sum(counts) == 60 and all(c > 0 for c in counts)
    gr = GenerativeReplay(latent=2, hidden=8, replay_batch=8)
    train(gr, MLP(16, (8,), 4), stream, epochs=1, batch_size=32, lr=0.05)
    samples = np.array(gr.extras()["samples"])
    assert samples.shape == (len(stream), 10, 16)


def test_imbalanced_stream_keeps_the_asked_share_of_each_class():
    from cfutils.runs import RunSpec, data_for

    fractions = (1.0, 0.5, 0.1, 0.05, 1, 1, 1, 1, 1, 1)
    spec = RunSpec("naive", n_train=2000, n_test=500, class_fractions=fractions)
    counts = torch.bincount(torch.cat([t.y_train for t in data_for(spec)]), minlength=10)
    assert counts[:4].tolist() == [200, 100, 20, 10] and counts[4:].eq(200).all()
    assert sum(len(t.y_test) for t in data_for(spec)) == 500  # the test set stays balanced
    with pytest.raises(ValueError, match="class_fractions"):
        RunSpec("naive", class_fractions=(0.5,) * 9)
    with pytest.raises(ValueError, match="class_fractions"):
        RunSpec("naive", class_fractions=(0.0,) + (1.0,) * 9)
