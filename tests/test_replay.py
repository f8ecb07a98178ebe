"""Unit tests of the replay memory and the replay methods (tiny tensors, a few seconds in all)."""
from __future__ import annotations

import math

import pytest
import torch

from cfutils.data import Dataset, split_stream
from cfutils.methods import DER, VAE, Buffer, GenerativeReplay, ICaRL, Replay, herding
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
    y = torch.cat([torch.full((300,), 0), torch.full((300,), 1), torch.full((150,), 2), torch.full((150,), 3)])
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
                                  lambda: ICaRL(40), lambda: ICaRL(40, selection="random")])
def test_methods_run_and_beat_chance(make, scenario):
    torch.manual_seed(0)
    method = make()
    result = train(method, MLP(16, (32,), 4), tiny_stream(scenario), epochs=2, batch_size=32, lr=0.05)
    assert result.R[-1].mean() > (0.5 if scenario == "task" else 0.25)
    assert method.stored_bytes() > 0


def test_task_il_replay_uses_each_sample_own_head():
    stream = tiny_stream("task")
    method = Replay(10)
    method.setup(MLP(16, (8,), 4), stream)
    out = method.logits(MLP(16, (8,), 4), torch.zeros(2, 1, 4, 4), torch.tensor([0, 1]))
    assert torch.isfinite(out[0, :2]).all() and (out[0, 2:] < -1e30).all()
    assert torch.isfinite(out[1, 2:]).all() and (out[1, :2] < -1e30).all()
