"""Seeding, devices, profiles, parameter checks, claims and the plot helpers."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cfutils import plots  # noqa: E402
from cfutils.claims import WIDTH, ClaimFailed, claim  # noqa: E402
from cfutils.repro import (check_choice, check_divides, check_float, check_int, pick_device,  # noqa: E402
                           resolve_profile, seed_everything)


def test_seed_everything_repeats_draws():
    seed_everything(3)
    a = torch.randn(4), np.random.rand()
    g = seed_everything(3)
    assert torch.equal(a[0], torch.randn(4)) and a[1] == np.random.rand()
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.randperm(5, generator=g), torch.randperm(5, generator=seed_everything(3)))


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device"):
        pick_device("tpu")


PROFILES = {"smoke": {"epochs": 1, "lr": 0.1}, "book": {"epochs": 2, "lr": 0.1}, "full": {"epochs": 10, "lr": 0.1}}


def test_resolve_profile():
    assert resolve_profile("book", PROFILES) == {"epochs": 2, "lr": 0.1}
    assert resolve_profile("book", PROFILES, lr=0.5, epochs=None) == {"epochs": 2, "lr": 0.5}
    with pytest.raises(ValueError, match="profile"):
        resolve_profile("huge", PROFILES)
    with pytest.raises(ValueError, match="momentum"):
        resolve_profile("book", PROFILES, momentum=0.9)


@pytest.mark.parametrize(("call", "word"), [
    (lambda: check_int("n_tasks", 0, minimum=1), "n_tasks"),
    (lambda: check_int("n_tasks", 2.5), "n_tasks"),
    (lambda: check_int("seed", True), "seed"),
    (lambda: check_float("lr", -0.1, positive=True), "lr"),
    (lambda: check_float("lr", "fast"), "lr"),
    (lambda: check_float("lr", float("nan")), "lr"),
    (lambda: check_choice("dataset", "x", ("a", "b")), "dataset"),
    (lambda: check_divides("n_tasks", 3, 10, "classes"), "n_tasks"),
])
def test_checks_name_the_parameter(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_claim_passes_and_prints(capsys):
    claim("two is more than one", 2 > 1, two=2.0)
    assert capsys.readouterr().out == "✓ two is more than one\n    two=2.000\n"


def test_claim_wraps_statement_and_evidence(capsys):
    statement = " ".join(["forgetting"] * 30)
    claim(statement, True, **{f"metric_{i}": 0.5 for i in range(12)})
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= WIDTH and len(lines) >= 4
    head = [line for line in lines if not line.startswith("    ")]
    assert head[0].startswith("✓ ") and " ".join(line.strip("✓ ") for line in head) == statement
    assert "metric_0=0.500" in lines[len(head)] and "metric_11=0.500" in lines[-1]


def test_claim_rejects_an_empty_statement():
    with pytest.raises(TypeError, match="statement"):
        claim("  ", True)


def test_claim_failure_carries_statement_and_evidence():
    with pytest.raises(ClaimFailed, match=r"EWC forgets less.*bwt=-0\.500"):
        claim("EWC forgets less", False, bwt=-0.5)


def test_plots_draw_without_error():
    plots.set_theme()
    fig, axes = plt.subplots(1, 3)
    plots.plot_accuracy_matrix(np.eye(3), ax=axes[0], title="R")
    plots.plot_task_curves([0, 1, 2], np.random.rand(3, 3), [1, 2], ax=axes[1], chance=0.1)
    plots.plot_method_bars({"naive": {"ACC": 0.2}, "joint": {"ACC": 0.8}}, "ACC", ax=axes[2])
    assert axes[0].get_title() == "R" and axes[1].get_ylabel() == "test accuracy"
    assert plots.method_color("naive") != plots.method_color("joint")
    assert plots.method_color("unknown") == (0.5, 0.5, 0.5)
    plt.close(fig)
