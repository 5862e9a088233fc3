"""The compute precision `auto` stands for: bfloat16 only where the CPU computes it in hardware.

Opt-in, not the default (docs/benchmarks.md): on a CPU with AMX, `mixed_bfloat16` trained the
`seed` model 2.0-2.7x faster than the plain float32 script (P1, three runs) but not the `default`
model, and was 0.5-1 point lower in accuracy (P6). Where bfloat16 is emulated it was 8x slower
than float32, and on GPUs it was not measured, so both keep float32.
"""

from __future__ import annotations

from pathlib import Path

NATIVE_BFLOAT16 = frozenset({"amx_bf16", "avx512_bf16"})  # /proc/cpuinfo flags


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (Linux); none where they cannot be read."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return frozenset()
    return next((frozenset(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")),
                frozenset())


def resolve(precision: str, flags: frozenset[str] | None = None, gpus: int | None = None) -> str:
    """`auto` -> `mixed_bfloat16` on a CPU-only machine with native bfloat16, else `float32`."""
    if precision != "auto":
        return precision
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    native = NATIVE_BFLOAT16 & (cpu_flags() if flags is None else flags)
    return "mixed_bfloat16" if native and not gpus else "float32"
