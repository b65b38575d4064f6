"""Measure models on this machine: size, load time, latency, memory, arithmetic rate.

``run_benchmark(models, threads, runs, warmup, image)`` measures every model (a bundle .zip,
an unpacked bundle folder or a bare .tflite) at every thread count and returns a report dict
(``machine``, ``settings``, ``sgemm``, ``results``, ``warnings``); ``format_table``,
``results_csv`` and ``report_json`` render it. ``edge-seg bench`` is a thin shell over this.

The parts, one job each: ``modelfile`` (the .tflite parser and GFLOP count), ``machine``
(CPU model, ISA features, governor), ``probes`` (fresh-process memory, the sgemm ceiling),
``timing`` (the interleaved loop), ``render`` (table, JSON, CSV) and ``suite`` (a benchmark
kit measured as the paper's table).

How things are measured (docs/BENCH.md has the field list):

- Models are measured **in turns**: for each thread count every model is loaded, warmed up,
  then timed round-robin, one inference per model per round, the order rotating each round,
  so slow drift of a shared or throttling machine hits all models alike and their ratio is fair.
- ``load_ms``: building the interpreter from the model bytes and allocating tensors (XNNPACK
  delegate applied); ``first_ms``: the first inference (XNNPACK packs weights then).
- Latency: ``invoke`` with the input already set (set_tensor + invoke + get_tensor), ``runs``
  times after ``warmup`` untimed runs: mean, std, p50, p90, p99, min, max; FPS = 1000/mean.
- End to end (``--image``): read the file, preprocess, infer, restore, postprocess and
  findings, exactly as ``edge-seg run`` does, with the split into its parts.
- Memory: a fresh Python process per model and thread count loads the model, runs it (and the
  end-to-end pipeline when an image is given) and reports its peak RSS and the RSS the model
  added above an interpreter-ready process (psutil; ru_maxrss for the peak).
- Arithmetic: GFLOP per inference counted from the .tflite flatbuffer (convolutions,
  transposed convolutions, fully connected, batch matmul; see ``count_macs``), the achieved
  GFLOP/s at the median latency, and a single-thread float32 sgemm ceiling measured in a
  subprocess with every BLAS limited to one thread (numpy matmul, 512x512).
"""

from edge_runtime.bench.machine import (cpu_governors, cpu_model, isa_features,  # noqa: F401
                                        machine_info, machine_warnings)
from edge_runtime.bench.modelfile import count_macs, model_gflop  # noqa: F401
from edge_runtime.bench.probes import measure_memory, memory_probe, sgemm_ceiling  # noqa: F401
from edge_runtime.bench.render import (TABLE_COLUMNS, format_table, machine_line,  # noqa: F401
                                       report_json, results_csv)
from edge_runtime.bench.timing import RESULT_FIELDS, run_benchmark  # noqa: F401
