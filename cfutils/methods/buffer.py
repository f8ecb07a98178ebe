r"""The replay memory: preallocated tensors on the device, filled by reservoir sampling.

The memory holds at most ``capacity`` samples ``(x, y, t[, logits])`` in tensors allocated once; an
insert writes only the rows it replaces and a replay batch gathers only the rows it draws, so both
cost O(batch), never O(capacity).

Samples are split into *groups*, each with its own reservoir and an equal share of the capacity:

* ``"reservoir"``: one group. Vitter's algorithm R: the :math:`n`-th sample of the stream
  (:math:`n = 1, 2, \dots`) is stored if :math:`n \le M`, otherwise it replaces a uniformly chosen
  slot with probability :math:`M/n`; every sample seen stays in memory with probability :math:`M/n`.
* ``"class_balanced"``: one reservoir per class; the :math:`k` classes seen so far get
  :math:`\lfloor M/k \rfloor` slots each, and when a class arrives the others give up random
  samples.
* ``"selected"``: one group per (task, class); the method chooses what to store (iCaRL's herding),
  in order of priority, and when a group shrinks it keeps its first samples.

Inputs that are 8-bit images (standardised or not: at most 256 evenly spaced values, see
:func:`eight_bit_range`) are stored as one ``uint8`` code per pixel, a quarter of float32's bytes,
and read back exactly: the buffer keeps the float value of each code it has written.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..repro import check_choice, check_int

POLICIES = ("reservoir", "class_balanced", "selected")


class Memory(NamedTuple):
    """A batch read from the buffer (``logits`` is None unless the buffer stores them)."""

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    logits: torch.Tensor | None


class Buffer:
    """A fixed-capacity replay memory of samples, labels, task indices and (optionally) logits."""

    def __init__(self, capacity: int, x_shape: tuple[int, ...], n_classes: int = 1,
                 n_tasks: int = 1, n_logits: int = 0, policy: str = "reservoir",
                 device: torch.device | str = "cpu", seed: int = 0,
                 value_range: tuple[float, float] | None = None):
        """``value_range``: (min, max) of 8-bit inputs (:func:`eight_bit_range`): store uint8."""
        check_int("capacity", capacity, minimum=1)
        check_choice("policy", policy, POLICIES)
        self.capacity, self.policy, self.n_classes = capacity, policy, n_classes
        self.value_range = value_range
        self.x = torch.zeros((capacity, *x_shape), device=device,
                             dtype=torch.float32 if value_range is None else torch.uint8)
        # The float value of each uint8 code, learned as samples are written (NaN: not seen yet).
        self.levels = (None if value_range is None
                       else torch.full((256,), float("nan"), device=device))
        self.all_levels_known = False  # until every code has been written once
        self.y = torch.zeros(capacity, dtype=torch.long, device=device)
        self.t = torch.zeros(capacity, dtype=torch.long, device=device)
        self.logits = torch.zeros((capacity, n_logits), device=device) if n_logits else None
        n_groups = {"reservoir": 1, "class_balanced": n_classes,
                    "selected": n_classes * n_tasks}[policy]
        # Per group (small, on the CPU): samples seen in the stream, stored, slots, first slot.
        self.seen, self.count, self.quota, self.start = (torch.zeros(n_groups, dtype=torch.long)
                                                         for _ in range(4))
        self.generator = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self.count.sum())

    @property
    def nbytes(self) -> int:
        """Bytes held by the preallocated tensors (what the memory costs, full or not)."""
        tensors = [s for s in (*self._storage(), self.levels) if s is not None]
        return sum(s.numel() * s.element_size() for s in tensors)

    def sample(self, n: int) -> Memory:
        """``n`` stored samples drawn uniformly with replacement: O(n), the memory is not copied."""
        u = torch.randint(len(self), (n,), generator=self.generator)
        return self._read(self._slot_of(u))

    def all(self) -> Memory:
        """Every stored sample (for analyses and iCaRL's class means)."""
        return self._read(self._slot_of(torch.arange(len(self))))

    def group_counts(self) -> torch.Tensor:
        """How many samples each group holds."""
        return self.count.clone()

    # ------------------------------------------------------------------ writing
    def add(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
            logits: torch.Tensor | None = None) -> None:
        """Offer a batch to the memory; each group runs algorithm R on its own sub-stream."""
        if self.policy == "selected":
            raise RuntimeError("a 'selected' buffer is filled with put(), not add()")
        if len(self.seen) == 1:
            return self._add_to_one_reservoir(x, y, t, logits)
        g = y.cpu() if self.policy == "class_balanced" else torch.zeros(len(y), dtype=torch.long)
        new = self.seen[g] == 0
        if new.any():  # a group appears: the others make room for it
            self._make_room(self.seen.bool().index_fill(0, g[new], True), keep="random")
        # r: 0-based position of each sample in its group's stream; fill while r < quota, else
        # draw j ~ U{0..r}.
        r = self.seen[g] + _rank_within_group(g, len(self.seen))
        q = self.quota[g]
        drawn = (torch.rand(len(r), generator=self.generator, dtype=torch.float64) * (r + 1)).long()
        j = torch.where(r < q, r, drawn)
        keep = j < q
        slots, rows = _last_writer(self.start[g][keep] + j[keep], keep.nonzero().squeeze(1))
        self._write(slots, x, y, t, logits, rows)
        self.seen += torch.bincount(g, minlength=len(self.seen))
        self.count = torch.minimum(self.seen, self.quota)

    def _add_to_one_reservoir(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
                              logits: torch.Tensor | None) -> None:
        r""":meth:`add` for one group: the same draws and writes, decided in NumPy.

        The sample at stream position :math:`r` goes to slot :math:`r` while :math:`r < M`,
        else to slot :math:`\lfloor u\,(r+1) \rfloor` if that is below :math:`M`; a later
        sample of the batch overwrites an earlier one that chose the same slot. A batch is a few
        hundred numbers, for which NumPy costs a fraction of the tensor operations' dispatch.
        """
        seen, quota = int(self.seen[0]), int(self.quota[0])
        if seen == 0:
            self._make_room(torch.ones(1, dtype=torch.bool), keep="random")
            quota = int(self.quota[0])
        u = torch.rand(len(y), generator=self.generator, dtype=torch.float64).numpy()
        r = np.arange(seen, seen + len(u))
        slots = np.where(r < quota, r, (u * (r + 1)).astype(np.int64))
        rows = np.flatnonzero(slots < quota)
        row_of_slot = dict(zip(slots[rows].tolist(), rows.tolist()))  # the last writer wins
        if row_of_slot:
            self._write(torch.tensor(list(row_of_slot)), x, y, t, logits,
                        torch.tensor(list(row_of_slot.values())))
        self.seen += len(u)
        self.count = torch.minimum(self.seen, self.quota)

    def put(self, group: int, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        """Store the first ``quota`` samples of ``x`` (by priority) as ``group``'s ("selected")."""
        active = self.seen.bool()
        active[group] = True
        self._make_room(active, keep="first")
        n = min(len(y), int(self.quota[group]))
        self._write(self.start[group] + torch.arange(n), x, y, t, None, torch.arange(n))
        self.seen[group] = n
        self.count[group] = n

    def _make_room(self, active: torch.Tensor, keep: str) -> None:
        """Give each active group ``capacity // k`` slots; shrinking groups keep random or first
        samples."""
        if torch.equal(active, self.quota.bool()):
            return
        quota = active.long() * (self.capacity // int(active.sum()))
        start = quota.cumsum(0) - quota
        kept = torch.minimum(self.count, quota)
        old, new = [], []
        for grp in torch.nonzero(kept).squeeze(1).tolist():
            k = int(kept[grp])
            pick = (torch.randperm(int(self.count[grp]), generator=self.generator)[:k]
                    if keep == "random" else torch.arange(k))
            old.append(self.start[grp] + pick)
            new.append(start[grp] + torch.arange(k))
        if old:
            old_idx, new_idx = torch.cat(old).to(self.y.device), torch.cat(new).to(self.y.device)
            for s in self._storage():
                s[new_idx] = s[old_idx]  # the right side is gathered (copied) before the write
        self.quota, self.start, self.count = quota, start, kept

    # ------------------------------------------------------------------ helpers
    def _storage(self) -> list[torch.Tensor]:
        return [s for s in (self.x, self.y, self.t, self.logits) if s is not None]

    def _slot_of(self, u: torch.Tensor) -> torch.Tensor:
        """Map ranks ``0..len-1`` over the stored samples to buffer rows (groups fill their slots in
        order)."""
        if len(self.count) == 1:  # one group: its slots are 0..len-1
            return u.to(self.y.device)
        cum = self.count.cumsum(0)
        group = torch.searchsorted(cum, u, right=True)
        return (self.start[group] + u - (cum[group] - self.count[group])).to(self.y.device)

    def _read(self, idx: torch.Tensor) -> Memory:
        x = self.x.index_select(0, idx)
        if self.levels is not None:  # uint8 codes back to their float values
            x = self.levels.index_select(0, x.view(-1).to(torch.int32)).view(x.shape)
        logits = None if self.logits is None else self.logits.index_select(0, idx)
        return Memory(x, self.y.index_select(0, idx), self.t.index_select(0, idx), logits)

    def _write(self, slots: torch.Tensor, x, y, t, logits, rows: torch.Tensor) -> None:
        """Rows ``rows`` of the batch into buffer rows ``slots`` (distinct)."""
        slots, rows = slots.to(self.y.device), rows.to(y.device)
        x = x.detach().index_select(0, rows)
        self.x.index_copy_(0, slots, x.to(self.x.dtype) if self.levels is None else self._encode(x))
        self.y.index_copy_(0, slots, y.index_select(0, rows))
        self.t.index_copy_(0, slots, t.index_select(0, rows))
        if self.logits is not None and logits is not None:
            self.logits.index_copy_(0, slots, logits.detach().index_select(0, rows))


    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 codes of ``x``, checking that each code always stands for the same float value."""
        x = x.detach().to(self.levels.device)
        q = _codes(x, *self.value_range).to(torch.int32).view(-1)  # int32: a cheap index
        values = self.levels.index_select(0, q)
        if not self.all_levels_known:  # codes seen for the first time learn their value
            unknown = values.isnan()
            self.levels[q[unknown].long()] = x.reshape(-1)[unknown]
            values = self.levels.index_select(0, q)
            self.all_levels_known = not bool(self.levels.isnan().any())
        if not torch.equal(values, x.reshape(-1)):
            raise ValueError("these inputs are not 8-bit images (two values share a uint8 code); "
                             "create the Buffer without value_range to store float32")
        return q.to(torch.uint8).view(x.shape)


def _codes(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """The nearest of 256 evenly spaced levels from ``lo`` to ``hi`` (as floats 0..255)."""
    return ((x - lo) * (255 / (hi - lo))).round_().clamp_(0, 255)


def eight_bit_range(xs: Iterable[torch.Tensor], check: int = 1000) -> tuple[float, float] | None:
    """(min, max) of inputs that are 8-bit images mapped affinely to floats, else None.

    8-bit means: every value lies within 0.01 of one of 256 evenly spaced levels from min to max
    (checked on the first ``check`` samples of each tensor). Standardised pixels of MNIST-like data
    pass; three channels standardised apart do not (they are stored as float32).
    """
    xs = list(xs)
    lo, hi = min(float(x.min()) for x in xs), max(float(x.max()) for x in xs)
    if not hi > lo:
        return None
    for x in xs:
        scaled = (x[:check] - lo) * (255 / (hi - lo))
        if float((scaled - scaled.round()).abs().max()) > 0.01:
            return None
    return lo, hi


def _rank_within_group(g: torch.Tensor, n_groups: int) -> torch.Tensor:
    """For each element, how many earlier elements of the batch share its group."""
    if n_groups == 1:
        return torch.arange(len(g))
    return (F.one_hot(g, n_groups).cumsum(0) - 1).gather(1, g.unsqueeze(1)).squeeze(1)


def _last_writer(slots: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """When several samples of one batch pick the same slot, keep the latest (as the sequential
    algorithm does)."""
    if len(rows) == 0:
        return slots, rows
    order = torch.argsort(slots * (int(rows.max()) + 1) + rows)  # by slot, then by arrival
    s, r = slots[order], rows[order]
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    return s[last], r[last]
