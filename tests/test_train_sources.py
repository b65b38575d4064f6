"""Training on several sources: each folder split on its own, scanner-difference
augmentations, and the report's setting chosen on the worst source."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_runtime.datasets import Sample, split_by_family  # noqa: E402
from edge_seg.train.data import check_scanner_augment, make_dataset  # noqa: E402
from edge_seg.train.report import choose_per_source, is_multi_source  # noqa: E402
from edge_seg.train.trainer import TrainConfig, config_from_saved, make_split  # noqa: E402


def _samples(source, n, mask=True):
    return [Sample(key=f"{source}{i}", image=f"{source}/{i}.png",
                   mask=f"{source}/m{i}.png" if mask else None, label=1 + i % 3 if mask else 0,
                   family=f"{source}{i // 2}", source=source) for i in range(n)]


def test_make_split_by_source_keeps_the_first_source_as_it_was_alone():
    fig, other = _samples("fig", 60), _samples("other", 30)
    negs = _samples("neg", 40, mask=False) + _samples("neg2", 20, mask=False)
    cfg = TrainConfig(split_by_source=True, val_fractions={"other": 0.5, "neg2": 0.5},
                      twin_similarity=0)
    tr, va, ntr, nva, _ = make_split(cfg, fig + other, negs)
    assert [s for s in va if s.source == "fig"] == split_by_family(fig, 0.2, 0)[1]
    assert sum(s.source == "other" for s in va) == pytest.approx(15, abs=3)
    assert sum(s.source == "neg2" for s in nva) == 10
    with pytest.raises(ValueError, match="not among the data folders"):
        make_split(TrainConfig(split_by_source=True, val_fractions={"nope": 0.5}), fig, [])


def test_split_seed_fixes_the_split_while_the_seed_changes():
    """A second training seed on the same split (--seed 1 --split-seed 0); the split.json
    and every reader of it name the split's seed."""
    from edge_seg.train.trainer import effective_split_seed, split_record
    fig, negs = _samples("fig", 60), _samples("neg", 40, mask=False)
    base = make_split(TrainConfig(twin_similarity=0), fig, negs)
    same = make_split(TrainConfig(seed=1, split_seed=0, twin_similarity=0), fig, negs)
    other = make_split(TrainConfig(seed=1, twin_similarity=0), fig, negs)
    keys = [[s.key for s in part] for part in base[:4]]
    assert [[s.key for s in part] for part in same[:4]] == keys
    assert [[s.key for s in part] for part in other[:4]] != keys
    cfg = TrainConfig(seed=1, split_seed=0)
    assert effective_split_seed(cfg) == 0 and effective_split_seed(TrainConfig(seed=3)) == 3
    assert split_record(cfg, *same[:4])["seed"] == 0
    from edge_seg.convert.source import Source
    assert Source.split_seed.fget(type("S", (), {"config": {"seed": 1, "split_seed": 0}})()) == 0
    assert config_from_saved({"variant": "resunet_se", "seed": 2}).split_seed is None


def test_runs_made_before_keep_their_split_and_augmentation():
    cfg = config_from_saved({"variant": "resunet_se"})
    assert cfg.split_by_source is False and cfg.augment == []


def test_scanner_augmentations_change_intensities_only_and_are_deterministic():
    rng = np.random.default_rng(0)
    x = (rng.random((8, 64, 64)) * 0.5).astype(np.float32)
    y = np.zeros((8, 64, 64), np.uint8)
    y[:, 20:40, 20:40] = 1
    x[y > 0] += 0.4
    names = ["contrast", "lowres", "blur", "bias", "noise", "jpeg"]
    plain, _ = make_dataset(x, y, 48, 4, seed=3)
    aug, _ = make_dataset(x, y, 48, 4, seed=3, scanner_augment=names)
    a1 = [(i.numpy(), m.numpy()) for i, m in aug(2)]
    a2 = [(i.numpy(), m.numpy()) for i, m in aug(2)]
    p = [(i.numpy(), m.numpy()) for i, m in plain(2)]
    assert all(np.array_equal(u[0], v[0]) for u, v in zip(a1, a2))       # resume-exact
    assert all(np.array_equal(u[1], v[1]) for u, v in zip(a1, p))        # same crops, masks
    assert any(not np.allclose(u[0], v[0]) for u, v in zip(a1, p))       # other intensities
    assert all(0.0 <= u[0].min() and u[0].max() <= 1.0 for u in a1)


def test_unknown_augmentation_is_refused_with_the_allowed_names():
    with pytest.raises(ValueError, match="allowed: contrast, lowres"):
        check_scanner_augment(["blur", "fog"])
    assert check_scanner_augment(["jpeg", "bias", ""]) == ["bias", "jpeg"]


def test_report_chooses_on_the_worst_source():
    def point(a, fig, brisc, neg1, neg2):
        return {"threshold": 0.5, "min_area_fraction": a, "min_peak_probability": 0.0,
                "dice_mean": (fig + brisc) / 2, "fp_scan_rate": (neg1 + neg2) / 2,
                "by_source": {"figshare": {"n_tumour": 5, "dice_mean": fig},
                              "brisc": {"n_tumour": 5, "dice_mean": brisc},
                              "notumor": {"n_tumour_free": 9, "fp_scan_rate": neg1},
                              "brisc_notumor": {"n_tumour_free": 9, "fp_scan_rate": neg2}}}
    sweep = [point(0.0, 0.80, 0.70, 0.01, 0.09),    # best pooled, too many flags on one source
             point(0.001, 0.76, 0.70, 0.01, 0.05),
             point(0.002, 0.79, 0.66, 0.00, 0.03)]  # better mean Dice, worse worst source
    assert is_multi_source(sweep)
    assert choose_per_source(sweep, 0.05)["min_area_fraction"] == 0.001
    assert choose_per_source(sweep, 0.01)["min_area_fraction"] == 0.002   # none: fewest flags
