"""Time per training step of every method in ``cfutils.methods``, relative to fine-tuning, in one run.

Protocol (the same for every row): full Split Fashion-MNIST, 5 class-IL tasks of 2 classes, MLP
784-400-400-10, SGD lr 0.01, batch 128, one torch thread. Every method is trained on tasks 1-4 (so
penalties, buffers and teachers hold four tasks), then the methods take the steps of task 5 in turn
(``interleave.py``); a step's time is the median CPU time of its steps.

Also measured: fine-tuning's throughput in the trainer against a plain PyTorch loop over the same
tensors (same model, batch, optimizer; median step times, the two taking turns task by task), the
replay buffer's insertion + sampling at 5,000 samples, and the merged quadratic penalty on
its own, each against a fine-tuning step. The first ``torch.optim`` construction in a process imports
``torch._dynamo`` (seconds): a warm-up run pays it before anything is timed.

Usage: ``python benchmarks/method_speed.py [--rounds 25] [--repeats 2] [--only ewc der ...]``.
Prints ratios; asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import torch
import torch.nn.functional as F

from cfutils import methods as M
from cfutils.data import TaskStream, load_dataset, split_stream
from cfutils.methods.buffer import Buffer, eight_bit_range
from cfutils.models import MLP
from cfutils.runs import METHODS
from cfutils.train import train
from interleave import Runner, interleaved

BATCH, LR = 128, 0.01
ROUNDS = 1000  # buffer and penalty timings: calls per measurement
clock = time.process_time  # CPU time (one thread): other jobs on the machine slow wall time, not this
# every registered method: (label, factory, target ratio to fine-tuning or None); SLOW ones are timed
# with one past task (their steps cost tens of fine-tuning steps, so are their preparations)
SLOW = ("OGD", "MER")
CONFIGS: dict[str, list[tuple[str, Callable[[], M.Method], float | None]]] = {
    "naive": [("fine-tuning", M.Naive, None)],
    "joint": [("joint", M.Joint, None)],
    "ewc": [("EWC (4 separate terms by task 5)", lambda: M.EWC(100.0), 1.15)],
    "online_ewc": [("online EWC", lambda: M.OnlineEWC(100.0), 1.15)],
    "si": [("SI", lambda: M.SI(1.0), 1.15)],
    "mas": [("MAS", lambda: M.MAS(1.0), 1.15)],
    "l2": [("L2 (uniform importance)", lambda: M.L2(1.0), 1.15)],
    "replay": [("ER, replay batch 128", lambda: M.Replay(5000, 128), 2.0),
               ("ER, replay batch 32", lambda: M.Replay(5000, 32), 1.4)],
    "der": [("DER", lambda: M.DER(5000, 128), None),
            ("DER++", lambda: M.DER(5000, 128, beta=0.5), 2.6)],
    "generative_replay": [("generative replay", M.GenerativeReplay, None)],
    "icarl": [("iCaRL (2,000 exemplars)", lambda: M.ICaRL(2000), None)],
    "lwf": [("LwF (LwF.MC in class-IL)", lambda: M.LwF(1.0, 2.0), None)],
    "lwf_replay": [("LwF + ER (replay batch 32)", lambda: M.LwFReplay(500, 32), None)],
    "lfl": [("LFL", lambda: M.LFL(1.0), None)],
    "agem": [("A-GEM (memory batch 128)", lambda: M.AGEM(256, 128), 2.5)],
    "gem": [("GEM (128 per task; 1 + past tasks x step)", lambda: M.GEM(128), None)],
    "ogd": [("OGD (200 directions per task)", lambda: M.OGD(200), None)],
    "gpm": [("GPM (threshold 0.97)", lambda: M.GPM(0.97), None)],
    "pcgrad": [("PCGrad (joint training)", M.PCGrad, None)],
    "mer": [("MER (replay 10, 1 batch)", lambda: M.MER(500, 10, 1), None)],
}


def trainer_step_times(stream: TaskStream) -> list[float]:
    """Fine-tuning in the trainer: intervals between consecutive optimizer steps of each task."""
    stamps: list[tuple[int, float]] = []
    torch.manual_seed(0)
    result = train(M.Naive(), MLP(), stream, batch_size=BATCH, lr=LR,
                   on_step=lambda step, _: stamps.append((step, clock())))
    first = {0, *result.boundaries}  # steps after which a task began: their intervals hold its set-up
    return [b - a for (_, a), (step, b) in zip(stamps, stamps[1:]) if step - 1 not in first]


def plain_loop_times(stream: TaskStream) -> list[float]:
    """The same steps written as a bare PyTorch loop over the same tensors."""
    torch.manual_seed(0)
    model, g, times = MLP(), torch.Generator().manual_seed(0), []
    for task in stream:
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        for idx in torch.randperm(task.n_train, generator=g).split(BATCH):
            start = clock()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(task.x_train[idx]), task.y_train[idx]).backward()
            opt.step()
            times.append(clock() - start)
    return times


def buffer_share(step: float, images: torch.Tensor, uint8: bool) -> float:
    """Reservoir insertion of one batch plus one 128-sample draw, at 5,000 stored samples, per step
    (``uint8``: the images stored as 8-bit codes, as the replay methods do for 8-bit data)."""
    buf = Buffer(5000, (1, 28, 28), 10, 5, value_range=eight_bit_range([images]) if uint8 else None)
    y, t = torch.randint(0, 10, (BATCH,)), torch.zeros(BATCH).long()
    batches = images[: len(images) // BATCH * BATCH].split(BATCH)
    for x in batches[:60]:  # fill the memory (5,000 < 60 x 128)
        buf.add(x, y, t)
    start = clock()
    for k in range(ROUNDS):
        buf.add(batches[60 + k % (len(batches) - 60)], y, t)
        buf.sample(128)
    return (clock() - start) / ROUNDS / step


def penalty_floor(step: float, stream) -> tuple[float, float]:
    r"""The merged quadratic penalty's value and gradient for this MLP timed on their own (no
    training around them, so with warm caches), and one elementwise pass over the parameters
    (:math:`\theta - m`), each per fine-tuning step: how far below 1.15x eager PyTorch can go."""
    model, penalty = MLP(), M.L2(1.0)
    penalty.setup(model, stream)
    penalty.after_task(model, stream[0])
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    params, centres = list(model.parameters()), list(penalty.centre.values())
    diffs = [torch.empty_like(p) for p in params]

    def one_pass() -> None:
        for p, m, d in zip(params, centres, diffs):
            torch.sub(p.detach(), m, out=d)

    return tuple(_seconds(f) / step for f in (lambda: penalty.after_backward(model), one_pass))


def _seconds(f: Callable[[], object]) -> float:
    """Median seconds of one call of ``f`` over :data:`ROUNDS` calls, after a few warm-up calls."""
    for _ in range(10):
        f()
    times = []
    for _ in range(ROUNDS):
        start = clock()
        f()
        times.append(clock() - start)
    return statistics.median(times)


def runner(make: Callable[[], M.Method], stream, k: int) -> Runner:
    """A :class:`~interleave.Runner` of the method ``make`` returns, after ``k`` tasks."""
    return Runner(make(), MLP(), stream, k, BATCH, LR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25, help="turns of 5 steps of every method")
    parser.add_argument("--repeats", type=int, default=2,
                        help="passes over the tasks, the trainer and the plain loop taking turns")
    parser.add_argument("--only", nargs="+", choices=sorted(CONFIGS), metavar="METHOD",
                        help="time only these methods (and fine-tuning, the reference)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    stream = split_stream(load_dataset("fashion_mnist"), 5, "class")
    start = time.perf_counter()
    trainer_step_times(stream)  # warm-up: pays the one-time torch._dynamo import
    print(f"warm-up run (includes the one-time torch._dynamo import): {time.perf_counter() - start:.1f} s,"
          " excluded from every figure below")
    trainer: list[float] = []
    plain: list[float] = []
    for _ in range(args.repeats):  # task by task, in turn
        for task in stream:
            one = TaskStream((replace(task, index=0),), stream.scenario, stream.n_classes)
            plain += plain_loop_times(one)
            trainer += trainer_step_times(one)
    base, loop = statistics.median(trainer), statistics.median(plain)
    print(f"\nfine-tuning {BATCH / base:,.0f} samples/s; plain PyTorch loop {BATCH / loop:,.0f} samples/s; "
          f"throughput ratio {loop / base:.2f} (target >= 0.95) {'ok' if loop / base >= 0.95 else 'MISS'}")
    images = stream[0].x_train
    for uint8 in (False, True):
        share = buffer_share(base, images, uint8)
        print(f"replay buffer insert + sample at 5,000 samples ({'uint8' if uint8 else 'float32'}): "
              f"{share:.1%} of a fine-tuning step (target <= 5%) {'ok' if share <= 0.05 else 'MISS'}")
    whole, one = penalty_floor(base, stream)
    print(f"merged quadratic penalty (value + gradient) alone: {whole:.1%} of a fine-tuning step; one "
          f"elementwise pass over the {sum(p.numel() for p in MLP().parameters()):,} parameters: "
          f"{one:.1%}\n(the penalty reads and writes the parameters' size 11 times: theta - m, A(theta - m), "
          "their dot product, the gradient's update)")
    names = [n for n in CONFIGS if args.only is None or n == "naive" or n in args.only]
    rows = [row for name in names for row in CONFIGS[name]]
    makers = {label: partial(runner, make, stream, 1 if label.startswith(SLOW) else len(stream) - 1)
              for label, make, _ in rows}
    times = interleaved(makers, args.rounds)
    print(f"\nsteps of task 5 (of task 2: {', '.join(SLOW)}), the methods taking {args.rounds} turns of "
          "5 steps each")
    print(f"{'method':38s} {'ms/step':>8s} {'ratio':>6s}  target")
    for label, _, target in rows:
        ratio = times[label] / times["fine-tuning"]
        verdict = "" if target is None else f"<= {target:.2f} {'ok' if ratio <= target else 'MISS'}"
        print(f"{label:38s} {1e3 * times[label]:8.2f} {ratio:6.2f}  {verdict}")
    for name in sorted(set(METHODS) - set(CONFIGS)):
        print(f"{name:38s} no benchmark configuration: add one to CONFIGS (MISS)")


if __name__ == "__main__":
    main()
