r"""Generative replay (Shin et al. 2017), with a VAE generator as in van de Ven & Tolias (2018).

No real sample is kept. A generator :math:`G` learns the inputs seen so far; while learning task
:math:`k`, the frozen pair (previous generator :math:`G_{k-1}`, previous classifier :math:`f_{k-1}`)
produces pseudo-samples :math:`\tilde x \sim G_{k-1}` labelled by :math:`f_{k-1}`:

.. math:: L(\theta) = \mathbb E_{D_k}\,\ell(f_\theta(x), y)
          + \beta\, \mathbb E_{\tilde x\sim G_{k-1}}\, T^2\,
            \mathrm{KL}\big(\mathrm{softmax}(f_{k-1}(\tilde x)/T)\,\big\|\,
            \mathrm{softmax}(f_\theta(\tilde x)/T)\big)

(soft labels; hard labels use :math:`\ell(f_\theta(\tilde x), \arg\max f_{k-1}(\tilde x))`). The new
generator trains on the same mix of real and generated inputs, so it learns the whole history.

``weighting="equal"`` weights new and replayed samples 1 : :math:`\beta` (the generator: 1 : 1).
``weighting="tasks"`` uses van de Ven & Tolias (2019)'s :math:`1/k` and :math:`1 - 1/k`, so that
each of the :math:`k` tasks seen counts equally, scaled by :math:`1 + \beta` for the classifier: the
total weight, and with SGD the step size, stays that of ``"equal"`` (the two agree on task 2 when
:math:`\beta = 1`).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Task, TaskStream
from ..repro import check_choice, check_float, check_int
from .base import Method

WEIGHTINGS = ("equal", "tasks")
SNAPSHOT = 10  # generated samples kept after each task


class VAE(nn.Module):
    r"""MLP variational auto-encoder, prior :math:`\mathcal N(0, I)`, encoder
    :math:`q(z\mid x) = \mathcal N(\mu(x), \mathrm{diag}\,\sigma^2(x))`."""

    def __init__(self, shape: tuple[int, ...], hidden: int = 400, latent: int = 32,
                 noise: float = 0.5):
        super().__init__()
        n = int(torch.Size(shape).numel())
        self.shape, self.latent, self.noise = tuple(shape), latent, noise
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(n, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, n))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        r"""Negative ELBO per sample, :math:`\frac{\lVert x - \hat x\rVert^2}{2s^2}
        + \mathrm{KL}(q(z\mid x)\,\|\,\mathcal N(0, I))`, with a Gaussian likelihood of standard
        deviation :math:`s` (``noise``) on the standardised pixels."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = ((self.decoder(z) - x.flatten(1)) ** 2).sum(1) / (2 * self.noise ** 2)
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
        return (recon + kl).mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws of the prior (from ``generator`` if given, else the global one)."""
        device = self.decoder[0].weight.device
        z = torch.randn(n, self.latent, generator=generator,
                        device=generator.device if generator else device)
        return self.decoder(z.to(device)).view(n, *self.shape)


class GenerativeReplay(Method):
    """Replay pseudo-samples of a VAE trained alongside the classifier, labelled by the previous
    classifier."""

    name = "generative_replay"

    def __init__(self, latent: int = 32, hidden: int = 400, replay_batch: int = 128,
                 beta: float = 1.0, soft: bool = True, temperature: float = 2.0,
                 vae_lr: float = 1e-3, weighting: str = "equal"):
        check_int("latent", latent, minimum=1)
        check_choice("weighting", weighting, WEIGHTINGS)
        check_int("replay_batch", replay_batch, minimum=1)
        check_float("beta", beta, minimum=0.0)
        check_float("temperature", temperature, positive=True)
        check_float("vae_lr", vae_lr, positive=True)
        self.latent, self.hidden, self.replay_batch, self.beta = latent, hidden, replay_batch, beta
        self.soft, self.temperature, self.vae_lr = soft, temperature, vae_lr
        self.weighting = weighting

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        super().setup(model, stream)
        x = stream[0].x_train
        self.vae = VAE(tuple(x.shape[1:]), self.hidden, self.latent).to(x.device)
        self.vae_opt = torch.optim.Adam(self.vae.parameters(), lr=self.vae_lr)
        self.old_model: nn.Module | None = None
        self.old_vae: VAE | None = None
        self.snapshots: list[list] = []  # a few samples of the generator after each task

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
        """Classifier loss on real + generated samples; the VAE takes one Adam step on the same
        inputs."""
        loss = F.cross_entropy(self.logits(model, x, t), y)
        vae_loss = self.vae.loss(x)
        if self.old_model is not None:
            x_old, t_old, target = self.dream(self.replay_batch)
            w_new, w_old = self.weights()
            loss = w_new * loss + w_old * self.replay_loss(self.logits(model, x_old, t_old), target)
            share = (1 / (self.task.index + 1) if self.weighting == "tasks"
                     else len(x) / (len(x) + len(x_old)))
            vae_loss = share * vae_loss + (1 - share) * self.vae.loss(x_old)
        self.vae_opt.zero_grad(set_to_none=True)
        vae_loss.backward()
        self.vae_opt.step()
        return loss

    def weights(self) -> tuple[float, float]:
        """The classifier's weights of the new and the replayed samples (tasks after the first)."""
        if self.weighting == "equal":
            return 1.0, self.beta
        k = self.task.index + 1
        return (1 + self.beta) / k, (1 + self.beta) * (1 - 1 / k)

    @torch.no_grad()
    def dream(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` generated inputs, a random earlier task for each, and the previous classifier's
        logits."""
        x = self.old_vae.sample(n)
        t = torch.randint(self.task.index, (n,), device=x.device)
        z = self.logits(self.old_model, x, t)
        return x, t, z.masked_fill(~self.old_columns, torch.finfo(z.dtype).min / 2)

    def replay_loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:math:`T^2\\,\\mathrm{KL}` to the softened old outputs, or cross-entropy with their
        argmax."""
        if not self.soft:
            return F.cross_entropy(out, target.argmax(dim=1))
        T = self.temperature
        kl = F.kl_div(F.log_softmax(out / T, dim=1), F.softmax(target / T, dim=1),
                      reduction="batchmean")
        return kl * T ** 2

    def before_task(self, model: nn.Module, task: Task) -> None:
        """The output units the previous classifier may answer with: the classes of the tasks
        before ``task``."""
        classes = [c for s in self.stream.tasks[: task.index] for c in s.classes]
        self.old_columns = torch.zeros(self.stream.n_classes, dtype=torch.bool,
                                       device=task.y_train.device)
        self.old_columns[classes] = True

    def after_task(self, model: nn.Module, task: Task) -> None:
        """Freeze copies of the classifier and the generator: the teachers of the next task."""
        self.old_model = copy.deepcopy(model).eval().requires_grad_(False)
        self.old_vae = copy.deepcopy(self.vae).eval().requires_grad_(False)
        # drawn from their own generator, so that keeping them leaves training unchanged
        images = self.old_vae.sample(SNAPSHOT, torch.Generator().manual_seed(task.index))
        self.snapshots.append(images.cpu().flatten(1).round(decimals=2).tolist())

    def extras(self) -> dict[str, list]:
        """``samples[k]``: :data:`SNAPSHOT` flattened images the generator drew after task k."""
        return {"samples": self.snapshots}

    def stored_bytes(self) -> int:
        """What the method stores besides the model: the generator and the frozen copies (no real
        data)."""
        nets = [net for net in (self.vae, self.old_vae, self.old_model) if net is not None]
        return sum(p.numel() * p.element_size() for net in nets for p in net.parameters())
