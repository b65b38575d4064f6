"""Evaluation, split by job. Scans on disk -> model -> full-resolution masks -> scores.

Used by ``edge-seg eval``, by training's final report and by conversion's accuracy gate, so
that "Dice" means the same number everywhere:

1. each scan is read with ``imageio.load_scan`` (its mask too; non-zero = tumour; a sample
   without a mask is tumour-free and its right answer is an empty mask);
2. ``preprocess.prepare_image`` makes the model input; ``predict_fn`` gives probabilities;
3. ``preprocess.restore`` brings them back to the scan's own size, and
   ``postprocess.postprocess(prob, threshold, min_area_fraction, min_peak_probability)``
   makes the mask (``sweep`` scores a whole grid of these settings from one model pass);
4. the mask is scored against the truth **at the scan's full resolution**
   (``edge_runtime.metrics``).

``predict_fn`` maps a float32 batch ``(N, S, S, 1)`` to probabilities ``(N, S, S, 1)`` (or
``(N, S, S)``). ``predict_fn_for_interpreter`` and ``predict_fn_for_keras`` make one.
A scan that cannot be read or scored becomes a row with ``status="failed"`` and its reason;
the others go on.

Modules (``edge_runtime.evaluate`` re-exports their public names):

- ``scoring``: ``evaluate`` (the per-scan loop -> ``EvalResult`` rows and summary),
  ``iter_predictions`` (the model pass), ``score``;
- ``sweep``: ``sweep``, a grid of post-processing settings from one model pass;
- ``summary``: ``summarise`` (groups, classes, patients, sources, worst source),
  ``DEFINITIONS``;
- ``stats``: ``wilson_interval``, the patient-level bootstrap (``patient_summary``);
- ``records``: ``ROW_FIELDS``, rows to and from CSV, ``to_json``, ``write_results``;
- ``splits``: a training run's split -> samples (``run_split_samples``);
- ``tflite_adapter``: ``predict_fn_for_interpreter``, ``evaluate_tflite``,
  ``evaluate_bundle``;
- ``keras_adapter``: ``predict_fn_for_keras`` (Keras is never imported here).
"""
