"""MNIST-1D (arXiv 2011.14439): the package's generator, the paper's frozen set, the cache."""

from __future__ import annotations

import logging
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from mnist1d.data import get_dataset_args, make_dataset
from mnist1d.utils import ObjectView

from gradkit.data import _mnist1d as mnist1d_module
from gradkit.data import cache_dir, load_dataset
from gradkit.data._mnist1d import DEFAULTS

# Values of the paper's frozen set mnist1d_data.pkl, taken from its JSON conversion in
# github.com/mdcfrancis/gomnist1d (data/mnist1d.json): they pin the default samples
# independently of the installed generator. FROZEN_X_*: (row, first column) -> five values.
FROZEN_Y_TEST_HEAD = [2, 6, 3, 9, 4, 3, 1, 9, 5, 2, 0, 7, 7, 1, 4, 6, 1, 4, 3, 9]
FROZEN_Y_TRAIN_TAIL = [2, 3, 8, 8, 2, 0, 3, 2, 6, 8, 5, 4, 8]
FROZEN_Y_TEST_COUNTS = [102, 104, 89, 106, 106, 98, 99, 96, 98, 102]
FROZEN_X_TRAIN = {
    (0, 0): [
        -0.3320056673693902, -0.4719103656557236, -0.778697076293495,
        -1.0097408265367047, -0.8823525654053074,
    ],
    (19, 0): [
        -0.8256802556641598, 0.05011685845787131, 1.5301581419814818,
        0.3894255027981202, -0.6766198543771618,
    ],
    (3999, 35): [
        -0.8775626556344291, -0.8137443925814231, -1.2162451343416705,
        -1.4649417006350856, -1.6509928567520655,
    ],
}  # fmt: skip
FROZEN_X_TEST = {
    (0, 0): [
        -0.07877078047732886, -0.21073170588642925, -0.09175138109239452,
        0.28267111736736455, 0.3260581534953046,
    ],
    (1, 0): [
        0.471047254993405, 0.731072232663023, 0.783740746591257,
        0.7803299106267946, 0.7592543518732037,
    ],
}  # fmt: skip
SMALL = {"num_samples": 100, "seed": 3}


def package_output(**options: object) -> dict[str, np.ndarray]:
    """``mnist1d.data.make_dataset`` itself, at its defaults updated by ``options``."""
    arguments = get_dataset_args(as_dict=True)
    arguments.update(options)
    return make_dataset(ObjectView(arguments))


def tensors(splits, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return getattr(splits, split).tensors


@pytest.fixture(scope="module")
def default_splits(tmp_path_factory: pytest.TempPathFactory):
    """The default MNIST-1D, generated once for this module (about 2 s)."""
    return load_dataset("mnist1d", root=tmp_path_factory.mktemp("mnist1d"))


def test_defaults_are_the_package_defaults() -> None:
    package = get_dataset_args(as_dict=True)
    del package["url"]
    package["padding"] = tuple(package["padding"])
    assert dict(DEFAULTS) == package


def test_default_shapes_dtypes_labels_and_balance(default_splits) -> None:
    assert default_splits.name == "mnist1d"
    assert default_splits.input_shape == (40,) and default_splits.classes == 10
    for split, size in (("train", 4000), ("test", 1000)):
        inputs, labels = tensors(default_splits, split)
        assert inputs.shape == (size, 40) and inputs.dtype == torch.float32
        assert labels.shape == (size,) and labels.dtype == torch.int64
        assert int(labels.min()) == 0 and int(labels.max()) == 9
    # 500 signals per class in all, shuffled before the split
    train_counts = torch.bincount(tensors(default_splits, "train")[1], minlength=10)
    test_counts = torch.bincount(tensors(default_splits, "test")[1], minlength=10)
    assert (train_counts + test_counts).tolist() == [500] * 10
    assert test_counts.tolist() == FROZEN_Y_TEST_COUNTS


def test_default_is_the_papers_frozen_set(default_splits) -> None:
    x_train, y_train = tensors(default_splits, "train")
    x_test, y_test = tensors(default_splits, "test")
    assert y_test[: len(FROZEN_Y_TEST_HEAD)].tolist() == FROZEN_Y_TEST_HEAD
    assert y_train[-len(FROZEN_Y_TRAIN_TAIL) :].tolist() == FROZEN_Y_TRAIN_TAIL
    for inputs, frozen in ((x_train, FROZEN_X_TRAIN), (x_test, FROZEN_X_TEST)):
        for (row, start), values in frozen.items():
            expected = torch.tensor(np.asarray(values, dtype=np.float32))
            assert torch.equal(inputs[row, start : start + 5], expected), (row, start)


def test_default_matches_the_package_exactly(default_splits) -> None:
    reference = package_output()
    for split, x_key, y_key in (("train", "x", "y"), ("test", "x_test", "y_test")):
        inputs, labels = tensors(default_splits, split)
        assert torch.equal(inputs, torch.from_numpy(reference[x_key].astype(np.float32)))
        assert torch.equal(labels, torch.from_numpy(reference[y_key].astype(np.int64)))


@pytest.mark.parametrize(
    "options",
    [
        SMALL,
        {"num_samples": 60, "seed": 0, "train_split": 0.5, "shuffle_seq": True},
        {"num_samples": 50, "final_seq_length": 24, "padding": (10, 20), "shear_scale": 0.0},
    ],
)
def test_matches_make_dataset_for_the_same_arguments(options: dict) -> None:
    splits = load_dataset("mnist1d", **options)
    reference = package_output(**{**options, "padding": list(options.get("padding", (36, 60)))})
    assert torch.equal(splits.train.tensors[0], torch.from_numpy(reference["x"]).float())
    assert torch.equal(splits.train.tensors[1], torch.from_numpy(reference["y"]))
    assert torch.equal(splits.test.tensors[0], torch.from_numpy(reference["x_test"]).float())
    assert torch.equal(splits.test.tensors[1], torch.from_numpy(reference["y_test"]))
    assert splits.input_shape == (options.get("final_seq_length", 40),)


def test_generation_is_deterministic_across_fresh_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_dataset("mnist1d", root=tmp_path / "a", **SMALL)
    second = load_dataset("mnist1d", root=tmp_path / "b", **SMALL)
    other_seed = load_dataset("mnist1d", root=tmp_path / "c", num_samples=100, seed=4)
    assert torch.equal(first.train.tensors[0], second.train.tensors[0])
    assert not torch.equal(first.train.tensors[0], other_seed.train.tensors[0])


@pytest.mark.parametrize(("num_samples", "train", "test"), [(300, 240, 60), (1000, 800, 200)])
def test_num_samples(num_samples: int, train: int, test: int) -> None:
    splits = load_dataset("mnist1d", num_samples=num_samples)
    assert len(splits.train) == train and len(splits.test) == test
    counts = torch.bincount(torch.cat([splits.train.tensors[1], splits.test.tensors[1]]))
    assert counts.tolist() == [num_samples // 10] * 10


def test_cache_hit_does_not_regenerate(monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_dataset("mnist1d", **SMALL)
    files = list((cache_dir() / "mnist1d").glob("mnist1d-*.npz"))
    assert len(files) == 1

    def refuse(arguments: dict) -> dict:
        raise AssertionError("regenerated despite a valid cache file")

    monkeypatch.setattr(mnist1d_module, "_generate", refuse)
    second = load_dataset("mnist1d", **SMALL)
    for split in ("train", "test"):
        for got, expected in zip(tensors(second, split), tensors(first, split), strict=True):
            assert torch.equal(got, expected)
    # other arguments are another file, so they do generate
    with pytest.raises(AssertionError, match="regenerated"):
        load_dataset("mnist1d", num_samples=100, seed=4)


def test_equal_arguments_share_a_cache_file(monkeypatch: pytest.MonkeyPatch) -> None:
    load_dataset("mnist1d", num_samples=100, scale_coeff=1)
    monkeypatch.setattr(mnist1d_module, "_generate", None)  # a call would fail
    load_dataset("mnist1d", num_samples=100, scale_coeff=1.0, padding=[36, 60])


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_data_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("x_train.npy")
    middle = member.header_offset + 200 + member.compress_size // 2
    content[middle] ^= 0xFF
    path.write_bytes(bytes(content))


def wrong_shape(path: Path) -> None:
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["x_train"] = arrays["x_train"][:, :20]
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)


def other_key(path: Path) -> None:
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["key"] = np.array("{}")
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)


@pytest.mark.parametrize(
    ("corrupt", "reason"),
    [
        (truncate, "unreadable (BadZipFile"),
        (lambda path: path.write_bytes(b""), "not an .npz (zip) archive"),
        (lambda path: path.write_bytes(b"not a zip file" * 100), "not an .npz (zip) archive"),
        (flip_a_data_byte, "unreadable (BadZipFile: Bad CRC-32 for file 'x_train.npy')"),
        (wrong_shape, "its train inputs are float32 (80, 20)"),
        (other_key, "it was written for other arguments"),
    ],
)
def test_a_corrupt_cache_file_is_regenerated(
    corrupt, reason: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = load_dataset("mnist1d", **SMALL)
    (path,) = (cache_dir() / "mnist1d").glob("mnist1d-*.npz")
    corrupt(path)
    with caplog.at_level(logging.WARNING, logger="gradkit.data"):
        again = load_dataset("mnist1d", **SMALL)
    assert f"mnist1d: regenerating the cache file {path}: {reason}" in caplog.text
    assert torch.equal(again.train.tensors[0], original.train.tensors[0])
    assert torch.equal(again.test.tensors[1], original.test.tensors[1])
    # the file was rewritten whole: the next load reads it
    monkeypatch.setattr(mnist1d_module, "_generate", None)
    load_dataset("mnist1d", **SMALL)


def test_an_unwritable_cache_still_returns_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("GRADKIT_CACHE", str(blocker))
    with caplog.at_level(logging.WARNING, logger="gradkit.data"):
        splits = load_dataset("mnist1d", **SMALL)
    assert len(splits.train) == 80
    assert f"mnist1d: could not cache the generated data at {blocker}" in caplog.text


def test_generation_leaves_the_global_random_state_alone() -> None:
    # make_dataset reseeds numpy's and Python's global generators
    np.random.seed(7)
    random.seed(7)
    expected = (np.random.rand(), random.random())
    np.random.seed(7)
    random.seed(7)
    load_dataset("mnist1d", **SMALL)
    assert (np.random.rand(), random.random()) == expected


def test_root_is_the_cache_directory(tmp_path: Path) -> None:
    load_dataset("mnist1d", root=tmp_path / "here", **SMALL)
    assert len(list((tmp_path / "here").glob("mnist1d-*.npz"))) == 1
    assert not (cache_dir() / "mnist1d").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_samples": 15}, "mnist1d: invalid num_samples=15; expected a multiple of 10 "
         "(the generator makes num_samples // 10 signals per class)"),
        ({"num_samples": 0}, "mnist1d: invalid num_samples=0; expected an integer >= 10"),
        ({"num_samples": 100.0}, "mnist1d: invalid num_samples=100.0; expected an integer >= 10"),
        ({"train_split": 1.0}, "mnist1d: invalid train_split=1.0; expected a number in (0, 1)"),
        ({"num_samples": 10, "train_split": 0.05},
         "mnist1d: train_split=0.05 of num_samples=10 leaves an empty split"),
        ({"seed": -1}, "mnist1d: invalid seed=-1; expected an integer >= 0"),
        ({"seed": 2**32}, "mnist1d: invalid seed=4294967296; expected an integer < 2**32"),
        ({"padding": (5, 2)}, "mnist1d: invalid padding=(5, 2); expected two integers "
         "(low, high) with 0 <= low <= high"),
        ({"padding": 3}, "mnist1d: invalid padding=3; expected two integers "
         "(low, high) with 0 <= low <= high"),
        ({"shuffle_seq": "yes"}, "mnist1d: invalid shuffle_seq='yes'; expected True or False"),
        ({"scale_coeff": -0.1},
         "mnist1d: invalid scale_coeff=-0.1; expected a finite number >= 0"),
        ({"iid_noise_scale": float("nan")},
         "mnist1d: invalid iid_noise_scale=nan; expected a finite number >= 0"),
        ({"final_seq_length": 0},
         "mnist1d: invalid final_seq_length=0; expected an integer >= 1"),
        ({"num_sample": 100}, "load_dataset: unknown option 'num_sample' for dataset 'mnist1d' "
         "(did you mean 'num_samples'?); expected one of 'num_samples', 'train_split', 'seed', "
         "'shuffle_seq', 'template_len', 'padding', 'scale_coeff', 'max_translation', "
         "'corr_noise_scale', 'iid_noise_scale', 'shear_scale', 'final_seq_length'"),
    ],
)  # fmt: skip
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        load_dataset("mnist1d", **options)
    assert str(raised.value) == message
    assert not (cache_dir() / "mnist1d").exists()
