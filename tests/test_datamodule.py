"""FusionDataModule: batch shapes, held-out val/test, folder and Lytro sources, argument errors, configs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest
import skimage.data
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from gipc.configs import conf_group
from gipc.data.datamodule import FusionDataModule
from gipc.data.embedded import CATALOGUE, load_photo
from gipc.data.pair_sets import EmbeddedPairs, FolderPairs, SynthesizedPairs
from gipc.data.samplers import EpochShuffle, FreshDraws, ResumableLoader
from gipc.errors import DataError
from gipc.imaging import write_image
from helpers import CONF

# Small bundled photos with blob maps: the embedded set in about a second.
SMALL = dict(photos=("text", "page", "moon", "cell", "brick"), max_side=96, test_fraction=0.4)
EMBEDDED = conf_group("data/source", "embedded")  # what data.source=embedded builds


def _module(test_root: str | None = None, batches_per_step: int = 1, seed: int = 1, paper_epoch: bool = False, **kwargs) -> FusionDataModule:
    source = EmbeddedPairs(**{**EMBEDDED, "patches_per_epoch": 60, **SMALL, **kwargs})
    module = FusionDataModule(source, batch_size=4, patch_size=16, seed=seed, test_root=test_root, batches_per_step=batches_per_step,
                              paper_epoch=paper_epoch)
    module.setup("fit")
    return module


def test_train_batches_hold_a_sub_batch_per_d_and_g_step() -> None:
    module = _module(batches_per_step=3)
    loader = module.train_dataloader()
    assert len(loader) == 60 // 12
    batch = next(iter(loader))
    assert set(batch) == {"a", "b", "gt"}
    for tensor in batch.values():
        assert tensor.shape == (12, 1, 16, 16) and tensor.dtype == torch.float32
        assert 0 <= tensor.min() and tensor.max() <= 1


def test_a_paper_epoch_is_n_over_b_g_steps_each_patch_drawn_once_per_d_and_g_batch() -> None:
    # Algorithm 1: m = n / b iterations, each of t = 2 D batches and one G batch of b patches.
    loader = _module(batches_per_step=3, paper_epoch=True).train_dataloader()
    assert len(loader) == 60 // 4  # n / b G steps, where one pass over the patches gives n / (3 b)
    sampler = loader.sampler
    sampler.set_epoch(2)
    drawn = list(sampler)
    assert sorted(drawn) == sorted(list(range(60)) * 3)  # every patch three times in the epoch
    passes = [drawn[k * 60 : (k + 1) * 60] for k in range(3)]
    assert len({tuple(p) for p in passes}) == 3  # each pass in its own order
    sampler.set_epoch(3)
    later = list(sampler)
    assert {tuple(p) for p in passes}.isdisjoint(tuple(later[k * 60 : (k + 1) * 60]) for k in range(3))  # and the next epoch's own
    one_pass = EpochShuffle(60, sampler.seed)
    one_pass.set_epoch(2)
    assert passes[0] == list(one_pass)  # the first pass is the one-pass epoch's order: old runs replay as they ran
    fresh = FreshDraws(6, seed=0, passes=3)
    fresh.set_epoch(1)
    assert list(fresh) == list(range(18, 36))  # synthesized pairs: 18 new draws an epoch


def test_same_seed_same_batches() -> None:
    first = next(iter(_module(seed=5).train_dataloader()))
    again = next(iter(_module(seed=5).train_dataloader()))
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = next(iter(_module(seed=6).train_dataloader()))  # and the seed is not ignored
    assert not torch.equal(first["gt"], other["gt"])
    # The patch order itself follows the seed (not only the split and the patches' places): data.seed's shuffle.
    assert list(_module(seed=5).train_dataloader().sampler) == list(EpochShuffle(60, 5)) != list(EpochShuffle(60, 6))


def test_a_train_loader_killed_twice_in_an_epoch_finishes_it_as_the_uninterrupted_one() -> None:
    module = _module()  # 60 patches in batches of 4: 15 an epoch

    def start(state: dict[str, int] | None, epoch: int) -> tuple[ResumableLoader, Iterator[dict]]:
        loader = module.train_dataloader()  # a new process: a new loader and sampler
        if state is not None:
            loader.load_state_dict(state)
        loader.sampler.set_epoch(epoch)  # as Lightning does: the state, then the epoch, then the batches
        return loader, iter(loader)

    full = [batch["gt"] for batch in start(None, 1)[1]]
    first, batches = start(None, 1)
    for _ in range(4):
        next(batches)
    second, batches = start(first.state_dict(), 1)
    for _ in range(3):
        next(batches)
    assert second.state_dict() == {"epoch": 1, "batches": 7}
    rest = [batch["gt"] for batch in start(second.state_dict(), 1)[1]]
    assert len(rest) == 15 - 7 and all(torch.equal(got, want) for got, want in zip(rest, full[7:]))
    # A checkpoint at the end of epoch 1 resumes in epoch 2, which skips nothing.
    assert len(list(start({"epoch": 1, "batches": 15}, 2)[1])) == 15


def test_a_batch_that_cannot_fill_every_sub_batch_is_dropped() -> None:
    loader = _module(batches_per_step=3, patches_per_epoch=61).train_dataloader()
    sizes = [batch["a"].shape[0] for batch in loader]
    assert sizes == [12] * 5  # 61 patches: five batches of 3 x 4, the 61st patch left for the next epoch


def test_batches_are_pinned_only_for_a_cuda_trainer() -> None:
    """Pinned host memory lets the copy to a GPU run beside the step; on a CPU it would only cost memory."""
    module = _module()
    assert not module.train_dataloader().pin_memory  # no trainer yet
    for device, pinned in (("cpu", False), ("cuda", True)):
        module.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
        assert module.train_dataloader().pin_memory is pinned
        assert module.val_dataloader().pin_memory is pinned and module.test_dataloader().pin_memory is pinned


def test_val_uses_a_few_held_out_images_and_test_all_of_them() -> None:
    module = _module(val_count=1)
    val = list(module.val_dataloader())
    test = list(module.test_dataloader())
    assert len(val) == 1 and len(test) == 2
    held = {b["name"][0] for b in test}
    assert len(module.train_set.names) == 3 and held.isdisjoint(module.train_set.names)
    assert {b["name"][0] for b in val} <= held  # validation reads held-out photos, never training ones
    assert held | set(module.train_set.names) == set(SMALL["photos"])
    item = test[0]
    assert set(item) == {"a", "b", "gt", "focus_map", "name"}
    assert item["a"].shape[0] == 1 and item["a"].shape == item["gt"].shape and item["a"].shape[-1] <= 96
    # the true map made the pair: A equals the ground truth where the map is 1 (eq. 18)
    inside = item["focus_map"].expand_as(item["a"]) == 1
    assert inside.any() and torch.equal(item["a"][inside], item["gt"][inside])


def test_the_embedded_photos_are_the_documented_ones_read_as_shipped() -> None:
    """docs/data.md: scikit-image's 17 bundled photos, region competition for those with a subject, the stereo
    disparity for the motorcycle, random blobs for textures and documents."""
    subjects = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "retina")
    textures = ("moon", "immunohistochemistry", "hubble_deep_field", "gravel", "brick", "grass", "page", "text", "cell")
    expected = {**dict.fromkeys(subjects, "region_competition"), **dict.fromkeys(textures, "blobs"), "motorcycle_left": "disparity"}
    assert {name: source for name, (_, source) in CATALOGUE.items()} == expected
    assert torch.equal(load_photo("text", None).image, torch.from_numpy(skimage.data.text()).float()[None] / 255)
    _, _, disparity = skimage.data.stereo_motorcycle()
    depth = load_photo("motorcycle_left", 128).map_options["depth"]
    assert depth.shape == (86, 128) and torch.isin(depth, torch.from_numpy(disparity)).all()  # downscaled, never interpolated


@pytest.mark.parametrize(
    ("photos", "test_fraction", "held_out"),
    [
        (SMALL["photos"], 0.4, 2),
        (("text", "page", "moon", "cell", "brick", "gravel", "grass"), 0.25, 2),  # 1.75 photos: the nearest count
        (("text", "page"), 0.9, 1),  # 1.8, but one photo is left to train on
    ],
)
def test_the_embedded_split_holds_out_the_nearest_count_of_photos_the_seed_picks(photos: tuple, test_fraction: float, held_out: int) -> None:
    source = EmbeddedPairs(**{**EMBEDDED, **SMALL, "max_side": 48, "photos": photos, "test_fraction": test_fraction})
    held = []
    for seed in (1, 2):
        split = source.split(16, seed)
        names = {scene.name for scene in split.test}
        assert len(names) == held_out and names.isdisjoint(split.train.names) and names | set(split.train.names) == set(photos)
        held.append(names)
    assert held[0] != held[1]  # another seed, other photos held out


@pytest.mark.parametrize("soft", [0.0, 2.0])
def test_embedded_soft_blurs_the_maps_edges(soft: float) -> None:
    """data.source.soft: a Gaussian of that std across the map's edges; 0 keeps the hard maps DRC gives (docs/data.md)."""
    split = EmbeddedPairs(**{**EMBEDDED, **SMALL, "max_side": 48, "soft": soft}).split(16, 0)
    partial = [bool(((scene.focus_map > 0) & (scene.focus_map < 1)).any()) for scene in split.test]
    assert partial == [soft > 0] * len(split.test)


def test_lytro_test_root_replaces_held_out_images(lytro_pairs: Path) -> None:
    module = _module(test_root=str(lytro_pairs))
    loader = module.test_dataloader()
    assert len(loader) == 20
    item = next(iter(loader))
    assert set(item) == {"a", "b", "name"} and item["a"].shape == (1, 3, 520, 520)
    assert "gt" in next(iter(module.val_dataloader()))


def _built_folder(root: Path) -> None:
    for split, names in (("train", ("t0", "t1")), ("test", ("v0",))):
        for i, name in enumerate(names):
            gt = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(i))
            for sub, pixels in (("A", gt), ("B", gt * 0.5), ("GT", gt)):
                write_image(root / split / sub / f"{name}.png", pixels)


def test_built_folder_source(tmp_path: Path) -> None:
    _built_folder(tmp_path)
    module = FusionDataModule(FolderPairs(root=str(tmp_path), stride=8), batch_size=2, patch_size=32)
    module.setup("fit")
    assert len(module.train_set) == 2 * (2 * 3)  # 40x48, 32px, stride 8: 2 rows x 3 columns
    batch = next(iter(module.train_dataloader()))
    torch.testing.assert_close(batch["a"], batch["gt"])  # A was written as the GT image itself
    assert [b["name"] for b in module.test_dataloader()] == [["v0"]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(batch_size=0), "batch_size must be an integer >= 1"),
        (dict(patch_size=0), "patch_size must be an integer >= 1"),
        (dict(batches_per_step=0), "batches_per_step"),
        (dict(test_root="/no/such/lytro"), "test_root /no/such/lytro does not exist"),
    ],
)
def test_bad_arguments_fail_in_the_constructor(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        FusionDataModule(**{"source": EmbeddedPairs(**EMBEDDED), "batch_size": 4, "patch_size": 16, **kwargs})


def test_a_photo_folder_given_as_a_built_set_is_told_how_to_use_its_photos(tmp_path) -> None:
    (tmp_path / "kodim01.png").write_bytes(b"")
    with pytest.raises(DataError) as error:
        FolderPairs(root=str(tmp_path))
    assert str(error.value) == (
        f"data.source.root {tmp_path}: no train/ folder; it is no gipc-build-data set; build one from its photos with "
        f"`gipc-build-data --source {tmp_path} --out NEW_DIR`, or train on them with data=photos 'data.source.photo_dirs=[{tmp_path}]'"
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: EmbeddedPairs(**{**EMBEDDED, "stride": 0}), r"data\.source\.stride must be an integer >= 1, got 0"),
        (lambda: EmbeddedPairs(**{**EMBEDDED, "val_count": 0}), r"data\.source\.val_count must be"),
        (lambda: FolderPairs(root="/no/such/data"), "no train/ folder; build one"),
        (lambda: EmbeddedPairs(**{**EMBEDDED, **SMALL, "photos": ("text", "page", "text")}).split(16, 0), "image names must be unique"),
        (lambda: EmbeddedPairs(**{**EMBEDDED, **SMALL, "photos": []}).split(16, 0), r"^no embedded photos chosen \(data\.source\.photos=\[\]\); name some"),
        (lambda: EmbeddedPairs(**{**EMBEDDED, **SMALL, "map_source": "disparity"}).split(16, 0), r"embedded photo '\w+' has no disparity map"),
        (lambda: SynthesizedPairs(synthesis={}, held_out_synthesis={}, patches_per_epoch=0), r"data\.source\.patches_per_epoch"),
        (lambda: SynthesizedPairs(synthesis={"sigma": [2, 1]}, held_out_synthesis={}, patches_per_epoch=8), r"bad data\.source\.synthesis"),
    ],
)
def test_each_source_checks_its_own_options(make, message: str) -> None:
    with pytest.raises(DataError, match=message):
        make()


def test_too_few_patches_for_one_step() -> None:
    """A step of 3 batches of 4 draws 12 patches: 11 are refused, exactly 12 make one step."""
    with pytest.raises(DataError, match="only 11 training patches but an epoch needs at least 12"):
        _module(patches_per_epoch=11, batches_per_step=3)
    assert len(_module(patches_per_epoch=12, batches_per_step=3).train_dataloader()) == 1


def test_configs_instantiate(tmp_path: Path) -> None:
    paper = OmegaConf.load(CONF / "data" / "embedded.yaml")
    assert (paper.batch_size, paper.patch_size) == (32, 80)  # Algorithm 1, section 4.1
    assert OmegaConf.load(CONF / "data" / "source" / "embedded.yaml").test_fraction == 0.25  # 30 of 120 images
    _built_folder(tmp_path)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        default = compose("config", overrides=["logger=none"])
        module = instantiate(default.data, batches_per_step=3)
        assert isinstance(module, FusionDataModule) and isinstance(module.source, EmbeddedPairs)
        # The default experiment (conf/experiment/quick.yaml) takes b = 8 and 48x48 patches over conf/data/embedded.yaml's
        # 32 and 80, which keeps its 0 workers; the step's 3 batches as asked
        assert (module.batch_size, module.patch_size, module.num_workers, module.batches_per_step) == (8, 48, 0, 3)
        folder = compose("config", overrides=["data=folder", f"data.source.root={tmp_path}", "logger=none"])
        module = instantiate(folder.data, batches_per_step=3)
        assert isinstance(module.source, FolderPairs) and module.source.root == str(tmp_path)
        assert (module.batch_size, module.patch_size, module.num_workers) == (8, 48, 0)  # data/folder.yaml: embedded's, under quick
        photos = compose("config", overrides=["data=photos", "data.source.photo_dirs=[]", "logger=none"])
        module = instantiate(photos.data)
        assert isinstance(module.source, SynthesizedPairs) and module.num_workers == 1
        assert list(module.source.recipe.sigma) == [1.0, 5.0]  # conf/data/source/photos.yaml
        with pytest.raises(MissingMandatoryValue):
            instantiate(compose("config", overrides=["data=folder", "logger=none"]).data)
