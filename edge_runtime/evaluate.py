"""The evaluation API in one place: re-exports the public names of ``edge_runtime.evaluation``
(split by job: scoring, sweep, summary, stats, records, splits, tflite_adapter,
keras_adapter; its docstring says what each does). Code may import from here or from the
module that does the job."""

from edge_runtime.evaluation.keras_adapter import predict_fn_for_keras
from edge_runtime.evaluation.records import (ROW_FIELDS, rows_from_csv, rows_to_csv, to_json,
                                             write_results)
from edge_runtime.evaluation.scoring import (EvalResult, evaluate, evaluate_predictions,
                                             iter_predictions, score)
from edge_runtime.evaluation.splits import run_split_samples, run_validation_samples
from edge_runtime.evaluation.stats import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, family_of,
                                           family_totals, patient_draws, patient_summary,
                                           wilson_interval)
from edge_runtime.evaluation.summary import (DEFINITIONS, HEADLINE, group_summary,
                                             source_summaries, summarise, tumour_free_summary,
                                             worst_source)
from edge_runtime.evaluation.sweep import sweep
from edge_runtime.evaluation.tflite_adapter import (evaluate_bundle, evaluate_tflite,
                                                    predict_fn_for_interpreter)

__all__ = [
    "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "DEFINITIONS", "HEADLINE", "ROW_FIELDS",
    "EvalResult", "evaluate", "evaluate_bundle", "evaluate_predictions", "evaluate_tflite",
    "family_of", "family_totals", "group_summary", "iter_predictions", "patient_draws",
    "patient_summary", "predict_fn_for_interpreter", "predict_fn_for_keras", "rows_from_csv",
    "rows_to_csv", "run_split_samples", "run_validation_samples", "score", "source_summaries",
    "summarise", "sweep", "to_json", "tumour_free_summary", "wilson_interval", "worst_source",
    "write_results",
]
