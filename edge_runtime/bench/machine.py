"""The machine a benchmark runs on: CPU model, ISA features, governor, cores, interpreter."""

import os
import platform
from pathlib import Path

import numpy as np

# ARM "CPU part" codes -> core names (for /proc/cpuinfo on Raspberry Pi and friends).
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
             "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
             "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0d": "Cortex-A77",
             "0xd41": "Cortex-A78", "0xc07": "Cortex-A7", "0xc08": "Cortex-A8",
             "0xc09": "Cortex-A9", "0xc0f": "Cortex-A15"}


def _read_text(path):
    try:
        return Path(path).read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def cpu_model():
    """A human name for the CPU: x86 'model name', an ARM board's model and core, or
    platform.processor()."""
    info = _read_text("/proc/cpuinfo") or ""
    fields = {}
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    if fields.get("model name") and not fields["model name"].lower().startswith("arm"):
        return fields["model name"]
    parts = []
    board = _read_text("/proc/device-tree/model") or fields.get("model")
    if board:
        parts.append(board)
    core = ARM_PARTS.get((fields.get("cpu part") or "").lower())
    if core:
        parts.append(core)
    if not parts:
        parts.append(fields.get("hardware") or fields.get("model name")
                     or platform.processor() or "unknown CPU")
    return ", ".join(parts)


# /proc/cpuinfo feature flags that decide how fast a TFLite model runs -> their usual names,
# in the order shown. x86 lists them under "flags", aarch64 under "Features".
ISA_FLAGS = (
    ("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512F"),
    ("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI"), ("avx512_bf16", "AVX-512 BF16"),
    ("amx_int8", "AMX-INT8"),
    ("asimd", "NEON"), ("asimdhp", "NEON fp16"), ("asimddp", "NEON dotprod"),
    ("i8mm", "I8MM"), ("bf16", "BF16"), ("sve", "SVE"),
)
# The flags that give int8 models a dot-product instruction (DRQ and int8 run on these).
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "asimddp", "i8mm", "amx_int8")


def cpu_flags(text=None):
    """The set of feature flags of the first CPU in /proc/cpuinfo (or in ``text``)."""
    info = _read_text("/proc/cpuinfo") if text is None else text
    for line in (info or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return set()


def isa_features(flags=None):
    """The ISA features that matter for TFLite speed, by their usual names (for example
    ``["AVX2", "FMA", "AVX-512F", "AVX-512 VNNI"]`` or ``["NEON", "NEON fp16", "NEON
    dotprod"]``); empty when /proc/cpuinfo is not readable."""
    flags = cpu_flags() if flags is None else set(flags)
    return [name for flag, name in ISA_FLAGS if flag in flags]


def has_int8_dot(flags=None):
    """True when the CPU has an int8 dot-product instruction (VNNI, NEON dotprod, I8MM),
    False when it has none, None when the flags are unreadable."""
    flags = cpu_flags() if flags is None else set(flags)
    if not flags:
        return None
    return any(f in flags for f in INT8_DOT_FLAGS)


def cpu_governors():
    """Sorted set of scaling governors of all CPUs, or None when unreadable."""
    govs = set()
    base = Path("/sys/devices/system/cpu")
    try:
        cpus = sorted(base.glob("cpu[0-9]*"))
    except OSError:
        return None
    for cpu in cpus:
        value = _read_text(cpu / "cpufreq" / "scaling_governor")
        if value:
            govs.add(value)
    return sorted(govs) or None


def machine_info():
    """The machine line: CPU, arch, ISA features, cores, governor, memory, Python, OS,
    interpreter."""
    import psutil
    try:
        from edge_runtime.interpreter import interpreter_info
        interp = interpreter_info()
    except Exception as exc:  # noqa: BLE001 - report it, models will fail one by one
        interp = {"package": None, "version": None, "error": str(exc)}
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count()
    try:
        freq = psutil.cpu_freq()
        max_mhz = round(freq.max) if freq and freq.max else None
    except Exception:  # noqa: BLE001 - not available in every container
        max_mhz = None
    try:
        load1 = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load1 = None
    govs = cpu_governors()
    flags = cpu_flags()
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "isa": isa_features(flags),
        "int8_dot": has_int8_dot(flags),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_usable": affinity,
        "cpu_max_mhz": max_mhz,
        "governor": ",".join(govs) if govs else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1min": load1,
        "python": platform.python_version(),
        "os": platform.platform(),
        "numpy": np.__version__,
        "interpreter": interp.get("package"),
        "interpreter_version": interp.get("version"),
    }


def machine_warnings(machine):
    warnings = []
    gov = machine.get("governor")
    if gov is None:
        warnings.append("CPU governor unreadable (no cpufreq in /sys): cannot check that "
                        "clocks are fixed; compare ratios from one run, not absolute times")
    elif gov != "performance":
        warnings.append(f"CPU governor is '{gov}', not 'performance': latencies vary with "
                        "clock scaling (sudo cpupower frequency-set -g performance)")
    load, cores = machine.get("load_avg_1min"), machine.get("cores_usable") or 1
    if load is not None and load > 0.5 * cores:
        warnings.append(f"machine is busy (load average {load} on {cores} cores): "
                        "absolute times are pessimistic; ratios within this run stay fair")
    return warnings

