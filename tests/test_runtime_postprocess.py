"""Postprocessing: connected components, small-component removal, findings."""

from collections import deque

import numpy as np
import pytest

from edge_runtime.postprocess import findings, label_components, postprocess

pytestmark = pytest.mark.device  # runs in a device-only install (no TensorFlow)


def _reference_count(mask):
    """Plain BFS 8-connected component count (slow, obviously correct)."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    count = 0
    for y in range(h):
        for x in range(w):
            if mask[y, x] and not seen[y, x]:
                count += 1
                queue = deque([(y, x)])
                seen[y, x] = True
                while queue:
                    cy, cx = queue.popleft()
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = cy + dy, cx + dx
                            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                                seen[ny, nx] = True
                                queue.append((ny, nx))
    return count


def test_components_match_reference_on_random_masks():
    rng = np.random.default_rng(1)
    for _ in range(60):
        h, w = rng.integers(1, 24, 2)
        mask = rng.random((h, w)) < rng.random()
        labels, count = label_components(mask)
        assert count == _reference_count(mask)
        assert np.array_equal(labels > 0, mask)
        # every label is one component: its pixels form a single reference component
        for lab in range(1, count + 1):
            assert _reference_count(labels == lab) == 1


def test_diagonal_touch_is_connected_8_way():
    mask = np.eye(5, dtype=bool)
    assert label_components(mask)[1] == 1
    assert label_components(np.fliplr(mask))[1] == 1


def test_u_shape_merges_late():
    mask = np.zeros((6, 7), bool)
    mask[:, 0] = mask[:, 6] = True
    mask[5, :] = True
    assert label_components(mask)[1] == 1


def test_postprocess_drops_small_components_keeps_large():
    prob = np.zeros((100, 100), np.float32)
    prob[10:40, 10:40] = 0.9        # 900 px
    prob[80:83, 80:83] = 0.95       # 9 px speck
    mask = postprocess(prob, 0.5, min_area_fraction=0.005)   # 50 px
    assert mask.dtype == bool and mask.shape == prob.shape
    assert mask.sum() == 900 and not mask[80:83, 80:83].any()


def test_peak_filter_drops_regions_the_model_is_never_sure_about():
    prob = np.zeros((100, 100), np.float32)
    prob[10:40, 10:40] = 0.7        # 900 px, large but never confident
    prob[20:25, 20:25] = 0.75
    prob[60:70, 60:70] = 0.6        # 100 px with a confident core
    prob[64, 64] = 0.97
    both = postprocess(prob, 0.5, 0.0)
    assert both.sum() == 1000
    kept = postprocess(prob, 0.5, 0.0, min_peak_probability=0.9)
    assert kept.sum() == 100 and kept[60:70, 60:70].all()
    # the peak counts anywhere in the region, above the threshold or not of the area filter
    assert postprocess(prob, 0.5, 0.005, min_peak_probability=0.75).sum() == 1000
    assert not postprocess(prob, 0.5, 0.0, min_peak_probability=0.98).any()


def test_no_tumour_is_first_class():
    prob = np.full((64, 48), 0.1, np.float32)
    prob[5, 5] = 0.99               # one noisy pixel only
    mask = postprocess(prob, 0.5, 0.001)
    assert not mask.any()
    f = findings(mask, prob, spacing_mm=(0.5, 0.5))
    assert f["tumour_found"] is False
    assert f["area_px"] == 0 and f["bbox"] is None and f["centroid"] is None
    assert f["mean_probability"] is None and f["area_mm2"] == 0.0
    assert f["max_probability"] == pytest.approx(0.99)


def test_findings_values():
    prob = np.zeros((50, 80), np.float32)
    prob[10:20, 30:50] = 0.8
    mask = postprocess(prob, 0.5, 0.0)
    f = findings(mask, prob, spacing_mm=(0.5, 0.25))
    assert f["tumour_found"] is True
    assert f["area_px"] == 200
    assert f["area_fraction"] == pytest.approx(200 / 4000)
    assert f["area_mm2"] == pytest.approx(200 * 0.125)
    assert f["bbox"] == {"x": 30, "y": 10, "width": 20, "height": 10}
    assert f["centroid"] == {"x": 39.5, "y": 14.5}
    assert f["components"] == 1
    assert f["mean_probability"] == pytest.approx(0.8)
    assert findings(mask, prob)["area_mm2"] is None


@pytest.mark.parametrize("kw,bad", [({"threshold": 1.5}, "threshold"),
                                    ({"min_area_fraction": 1.0}, "min_area_fraction"),
                                    ({"min_peak_probability": -0.1}, "min_peak_probability")])
def test_bad_parameters_say_what_was_received(kw, bad):
    args = {"threshold": 0.5, "min_area_fraction": 0.01, **kw}
    with pytest.raises(ValueError, match=bad):
        postprocess(np.zeros((8, 8)), **args)
