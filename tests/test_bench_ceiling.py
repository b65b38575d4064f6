"""bench.lab.resolution_ceiling: what the input resolution alone costs the Dice."""

import numpy as np
import pytest
from PIL import Image

from bench.lab.resolution_ceiling import ceiling, main
from edge_runtime.datasets import Sample

pytestmark = pytest.mark.lab  # the lab archive (bench/lab): pytest --lab -m lab


def _mask(path, size, box):
    m = np.zeros((size, size), np.uint8)
    y0, x0, y1, x1 = box
    m[y0:y1, x0:x1] = 255
    Image.fromarray(m).save(path)
    return path


def test_a_large_tumour_survives_the_round_trip_and_a_small_one_loses_more_at_low_size(
        tmp_path):
    big = Sample("1", tmp_path / "1.png", _mask(tmp_path / "m1.png", 512, (100, 100, 300, 300)),
                 label=1, label_name="meningioma")
    small = Sample("2", tmp_path / "2.png", _mask(tmp_path / "m2.png", 512, (250, 250, 262, 261)),
                   label=3, label_name="pituitary")
    free = Sample("3", tmp_path / "3.png")          # tumour-free: not scored
    at_256 = ceiling([big, small, free], 256)
    assert set(at_256) == {"meningioma", "pituitary"}
    assert at_256["meningioma"][0] > 0.99
    at_32 = ceiling([big, small], 32)
    assert at_32["pituitary"][0] < at_256["pituitary"][0]
    assert at_32["meningioma"][0] < at_256["meningioma"][0] + 1e-9


def test_a_folder_that_is_not_a_run_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("resolution_ceiling: ") and "no config.json" in err
    assert "\n" not in err
