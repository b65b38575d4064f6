"""Metrics against hand-computed values on small arrays."""

import math

import numpy as np
import pytest

from edge_runtime import metrics as M

pytestmark = pytest.mark.device  # runs in a device-only install (no TensorFlow)


def _mask(shape, *boxes):
    m = np.zeros(shape, dtype=bool)
    for r0, r1, c0, c1 in boxes:
        m[r0:r1, c0:c1] = True
    return m


def test_overlap_metrics_by_hand():
    # pred: 4x4 square (16 px); truth: the same square shifted right by 2 (16 px)
    pred = _mask((10, 10), (2, 6, 2, 6))
    truth = _mask((10, 10), (2, 6, 4, 8))
    assert M.confusion(pred, truth) == (8, 8, 8, 76)
    assert M.dice(pred, truth) == pytest.approx(2 * 8 / (16 + 16))       # 0.5
    assert M.iou(pred, truth) == pytest.approx(8 / 24)                    # 1/3
    assert M.precision(pred, truth) == pytest.approx(0.5)
    assert M.recall(pred, truth) == pytest.approx(0.5)


def test_non_binary_masks_count_nonzero_as_tumour():
    pred = np.array([[0, 255], [7, 0]], dtype=np.uint8)
    truth = np.array([[0, 1], [0, 0]], dtype=np.uint8)
    assert M.confusion(pred, truth) == (1, 1, 0, 2)
    assert M.dice(pred, truth) == pytest.approx(2 / 3)


def test_empty_mask_conventions():
    empty = np.zeros((5, 5), bool)
    some = _mask((5, 5), (1, 3, 1, 3))
    # both empty: a correct "no tumour"
    for f in (M.dice, M.iou, M.precision, M.recall):
        assert f(empty, empty) == 1.0
    # missed tumour: nothing predicted
    assert M.dice(empty, some) == 0.0
    assert M.iou(empty, some) == 0.0
    assert M.precision(empty, some) == 0.0
    assert M.recall(empty, some) == 0.0
    # false alarm on a tumour-free scan
    assert M.dice(some, empty) == 0.0
    assert M.precision(some, empty) == 0.0
    assert M.recall(some, empty) == 0.0
    # HD95 is undefined when a mask is empty
    assert math.isnan(M.hd95(empty, some))
    assert math.isnan(M.hd95(some, empty))
    assert math.isnan(M.hd95(empty, empty))


def test_shape_mismatch_and_bad_rank_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        M.dice(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="2-D"):
        M.dice(np.zeros((1, 3, 3)), np.zeros((1, 3, 3)))


def test_boundary_of_a_square():
    m = _mask((7, 7), (1, 6, 1, 6))                  # 5x5 square
    b = M.boundary(m)
    assert b.sum() == 16                              # its ring; the 3x3 inside is not boundary
    assert not b[2:5, 2:5].any()
    # pixels on the image edge are boundary pixels
    assert M.boundary(np.ones((3, 3), bool)).sum() == 8


def test_hd95_by_hand():
    a = _mask((20, 20), (5, 6, 5, 6))                 # one pixel at (5, 5)
    b = _mask((20, 20), (8, 9, 9, 10))                # one pixel at (8, 9): distance 3-4-5
    assert M.hd95(a, b) == pytest.approx(5.0)
    # anisotropic spacing: rows 2 mm, columns 0.5 mm -> sqrt((3*2)^2 + (4*0.5)^2)
    assert M.hd95(a, b, spacing=(2.0, 0.5)) == pytest.approx(math.hypot(6.0, 2.0))
    # identical masks
    sq = _mask((20, 20), (3, 9, 3, 9))
    assert M.hd95(sq, sq) == 0.0


def test_hd95_squares_shifted():
    # two 10x10 squares, one shifted down by 3 rows: every boundary pixel of one is at most
    # 3 px from the other's boundary, and the top/bottom rows are exactly 3 away.
    a = _mask((40, 40), (10, 20, 10, 20))
    b = _mask((40, 40), (13, 23, 10, 20))
    d_ab = M.directed_distances(np.argwhere(M.boundary(a)), M.boundary(b))
    assert d_ab.max() == pytest.approx(3.0)
    assert M.hd95(a, b) == pytest.approx(max(np.percentile(d_ab, 95),
                                             np.percentile(M.directed_distances(
                                                 np.argwhere(M.boundary(b)), M.boundary(a)),
                                                 95)))


def test_hd95_matches_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(5):
        a = rng.random((30, 27)) > 0.85
        b = rng.random((30, 27)) > 0.9
        pa, pb = np.argwhere(M.boundary(a)), np.argwhere(M.boundary(b))
        spacing = np.array([0.8, 1.3])
        d = np.sqrt((((pa[:, None] - pb[None]) * spacing) ** 2).sum(-1))
        want = max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))
        assert M.hd95(a, b, spacing) == pytest.approx(want)


def test_hd95_is_fast_on_512():
    import time
    a = _mask((512, 512), (100, 220, 100, 240))
    b = _mask((512, 512), (110, 230, 90, 250))
    t0 = time.perf_counter()
    M.hd95(a, b)
    assert time.perf_counter() - t0 < 0.5


def test_mean_iou_2class_by_hand():
    # 10 pixels: tp=2, fp=1, fn=1, tn=6 -> tumour IoU 2/4, background IoU 6/8
    assert M.mean_iou_2class(2, 1, 1, 6) == pytest.approx((0.5 + 0.75) / 2, abs=1e-6)
    # no tumour anywhere, nothing predicted: only the background class counts
    assert M.mean_iou_2class(0, 0, 0, 10) == pytest.approx(1.0, abs=1e-6)


def test_accumulator_pools_pixels_not_scans():
    acc = M.ConfusionAccumulator()
    acc.add(_mask((4, 4), (0, 2, 0, 2)), _mask((4, 4), (0, 2, 0, 2)))      # perfect, 4 px
    acc.add(_mask((4, 4), (0, 1, 0, 1)), _mask((4, 4), (0, 2, 0, 4)))      # 1 of 8 found
    assert (acc.tp, acc.fp, acc.fn, acc.tn) == (5, 0, 7, 20)
    assert acc.pixels == 32
    assert acc.dice() == pytest.approx(10 / 17)
    assert acc.iou() == pytest.approx(5 / 12)
    assert acc.background_iou() == pytest.approx(20 / 27)
    assert acc.mean_iou_2class() == pytest.approx((5 / 12 + 20 / 27) / 2, abs=1e-6)
    assert acc.matrix().tolist() == [[20, 0], [7, 5]]


def test_mean_iou_matches_keras():
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(0)
    metric = keras.metrics.MeanIoU(num_classes=2)
    acc = M.ConfusionAccumulator()
    for _ in range(3):
        truth = rng.random((32, 32)) > 0.8
        pred = rng.random((32, 32)) > 0.7
        metric.update_state(truth.astype("int32"), pred.astype("int32"))
        acc.add(pred, truth)
    assert acc.mean_iou_2class() == pytest.approx(float(metric.result()), abs=1e-6)


def test_scan_metrics_fields():
    row = M.scan_metrics(_mask((10, 10), (2, 6, 2, 6)), _mask((10, 10), (2, 6, 4, 8)),
                         spacing=(0.5, 0.5))
    assert {"tp", "fp", "fn", "tn", "truth_px", "pred_px", "dice", "iou", "precision",
            "recall", "miou_2class", "hd95_px", "hd95_mm"} <= set(row)
    assert row["hd95_mm"] == pytest.approx(row["hd95_px"] * 0.5)
