"""Shared fixtures. Keep this small: add fixtures, do not rewrite others'."""

import pytest

TINY_SIZE = 64


@pytest.fixture(scope="session", autouse=True)
def trust_file(tmp_path_factory):
    """Every test uses its own trust list (EDGE_SEG_TRUST), never the user's: the bundles
    the fixtures build are trusted there; any other bundle is untrusted unless a test trusts
    it (``edge_runtime.trust.trust_bundle``) or passes --allow-untrusted."""
    path = tmp_path_factory.mktemp("trust") / "trusted.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGE_SEG_TRUST", str(path))
        yield path


def build_tiny_tflite(size=TINY_SIZE):
    """A tiny deterministic 'segmenter' as TFLite bytes (TensorFlow is used only here).

    Two convolutions with fixed weights: prob = sigmoid(20 * mean3x3(x) - 10), so bright
    regions of the normalised scan (x near 1) are 'tumour' and a flat scan is not.
    """
    import numpy as np
    import tensorflow as tf
    from tensorflow import keras

    inp = keras.Input((size, size, 1), batch_size=1)
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="tiny_1_conv")(inp)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="tiny_2_conv")(x)
    model = keras.Model(inp, out)
    model.get_layer("tiny_1_conv").set_weights(
        [np.full((3, 3, 1, 2), 1 / 9, np.float32), np.zeros(2, np.float32)])
    model.get_layer("tiny_2_conv").set_weights(
        [np.full((1, 1, 2, 1), 10.0, np.float32), np.full(1, -10.0, np.float32)])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


@pytest.fixture(scope="session")
def tiny_tflite_bytes():
    """fp32 TFLite bytes of the tiny model (input (1, 64, 64, 1))."""
    return build_tiny_tflite()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_tflite_bytes, tmp_path_factory):
    """Path to a valid bundle zip around the tiny model (input 64, threshold 0.5)."""
    from edge_runtime.bundle import make_manifest, write_bundle
    from edge_runtime.preprocess import Preprocessing

    manifest = make_manifest("tiny-test", "fp32", Preprocessing(input_size=TINY_SIZE),
                             threshold=0.5, min_area_fraction=0.002, variant="tiny",
                             preset="test", interpreters_verified=["ai-edge-litert"])
    from edge_runtime.trust import trust_bundle
    path = tmp_path_factory.mktemp("bundle") / "tiny.zip"
    write_bundle(path, tiny_tflite_bytes, manifest, "# tiny-test\n\nA test model.\n")
    trust_bundle(path)
    return path


def _write_figshare(root, scans):
    """Write a figshare-layout folder (``images/``, ``masks/``, ``metadata.csv``) at ``root``
    from dicts with ``index``, ``pid``, ``label``, ``label_name``, ``image`` (uint8 array)
    and ``mask`` (bool array). -> root."""
    import csv

    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for s in scans:
        i = s["index"]
        Image.fromarray(np.asarray(s["image"], np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.asarray(s["mask"], bool).astype(np.uint8) * 255).save(
            root / "masks" / f"{i}.png")
        rows.append({"index": i, "image": f"images/{i}.png", "mask": f"masks/{i}.png",
                     "label": s["label"], "label_name": s["label_name"], "pid": s["pid"],
                     "pid_family": s["pid"]})
    with open(root / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture
def write_figshare():
    """``write_figshare(root, scans)``: a labelled folder in the figshare layout."""
    return _write_figshare
