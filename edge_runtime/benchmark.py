"""Compatibility name for ``edge_runtime.bench`` (the benchmark, split by job into
``edge_runtime/bench/``: modelfile, machine, probes, timing, render). Import from there in
new code; ``python -m edge_runtime.benchmark --memory-probe MODEL`` still works."""

import sys

from edge_runtime.bench import *  # noqa: F401,F403
from edge_runtime.bench.machine import (ARM_PARTS, ISA_FLAGS, cpu_flags,  # noqa: F401
                                        has_int8_dot)
from edge_runtime.bench.modelfile import (BATCH_MATMUL, CONV_2D, COUNTED,  # noqa: F401
                                          DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV)
from edge_runtime.bench.probes import (ONE_THREAD, SGEMM_CODE, _peak_rss,  # noqa: F401
                                       _probe_main)
from edge_runtime.bench.render import _fmt  # noqa: F401
from edge_runtime.bench.timing import (_float_arithmetic, _invoke_fn, _one_line,  # noqa: F401
                                       _stats)

if __name__ == "__main__":
    _probe_main(sys.argv[1:])
