"""Loading: the real data, checksums, clear errors for missing or corrupt files, and a cache never half-written."""
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cfutils import data
from cfutils.data import DataError, load_dataset

SYSTEM = data.SYSTEM_DIRS["fashion_mnist"]
needs_debian_files = pytest.mark.skipif(not SYSTEM.is_dir(), reason="dataset-fashion-mnist is not installed")


def test_fashion_mnist_shapes_and_standardisation(fmnist):
    assert fmnist.x_train.shape == (60000, 1, 28, 28) and fmnist.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(fmnist.y_train).tolist() == [6000] * 10
    assert abs(fmnist.x_train.mean().item()) < 1e-4 and abs(fmnist.x_train.std().item() - 1) < 1e-3
    assert fmnist.n_classes == 10 and fmnist.class_names[9] == "Boot"


def test_unknown_dataset_names_the_parameter():
    with pytest.raises(ValueError, match="dataset"):
        load_dataset("imagenet")


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A private cache and a private copy of the Debian files."""
    monkeypatch.setenv("CFUTILS_DATA", str(tmp_path / "cache"))
    src = tmp_path / "debian"
    shutil.copytree(SYSTEM, src)
    monkeypatch.setitem(data.SYSTEM_DIRS, "fashion_mnist", src)
    return src, tmp_path / "cache" / "fashion_mnist.pt"


@needs_debian_files
def test_cache_is_built_then_reused(sandbox):
    _, cache = sandbox
    first = load_dataset()
    assert cache.exists() and not list(cache.parent.glob(".*.tmp"))
    stamp = cache.stat().st_mtime_ns
    second = load_dataset()
    assert cache.stat().st_mtime_ns == stamp and torch.equal(first.y_test, second.y_test)


@needs_debian_files
def test_corrupt_cache_is_rebuilt(sandbox):
    _, cache = sandbox
    load_dataset()
    cache.write_bytes(b"not a tensor file")
    assert load_dataset().x_train.shape[0] == 60000
    assert torch.load(cache, weights_only=True)["train_y"].shape == (60000,)


@needs_debian_files
def test_corrupt_source_file_is_named_and_leaves_no_cache(sandbox):
    src, cache = sandbox
    path = src / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[-1] ^= 0xFF                                   # one flipped label byte: only the checksum can tell
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*reinstall"):
        load_dataset()
    assert not cache.exists()
    assert not cache.parent.exists() or not list(cache.parent.glob(".*.tmp"))


@needs_debian_files
def test_truncated_and_missing_files(sandbox):
    src, _ = sandbox
    truncated = src / "train-labels-idx1-ubyte.gz"
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(DataError, match="corrupt data file .*train-labels"):
        load_dataset()
    (src / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing data file .*train-labels"):
        load_dataset()


def test_atomic_save_leaves_nothing_on_failure(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    target = tmp_path / "x.pt"
    with pytest.raises(RuntimeError):
        data.atomic_save({"a": Unpicklable()}, target)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    data.atomic_write_bytes(b"x", tmp_path / "atomic")
    (tmp_path / "plain").write_bytes(b"x")
    assert (tmp_path / "atomic").stat().st_mode == (tmp_path / "plain").stat().st_mode


class FakeTorchvision:
    """Stands in for a torchvision dataset class: CIFAR-like uint8 HWC images, or a failing download."""

    fail = False

    def __init__(self, root, train, download):
        if self.fail:
            raise RuntimeError("Error downloading: Name or service not known")
        n = 20 if train else 10
        self.data = np.random.default_rng(int(train)).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        self.targets = [i % 10 for i in range(n)]


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("CFUTILS_DATA", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeTorchvision)
    return tmp_path


def test_download_path_gives_nchw_standardised_tensors(fake_cifar):
    ds = load_dataset("cifar10")
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.y_test.tolist() == list(range(10))
    assert torch.allclose(ds.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert (fake_cifar / "cifar10.pt").exists()


def test_failed_download_says_what_to_do(fake_cifar, monkeypatch):
    monkeypatch.setattr(FakeTorchvision, "fail", True)
    with pytest.raises(DataError, match=r"could not load cifar10 \(Error downloading.*connect to the internet"):
        load_dataset("cifar10")
    assert not (fake_cifar / "cifar10.pt").exists()
