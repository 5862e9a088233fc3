"""`model.precision = "auto"`: bfloat16 only on a CPU that computes it in hardware, and no GPU."""

import pytest

from multitask.config import ModelConfig
from multitask.config_loader import load_config
from multitask.model import build_model
from multitask.precision import cpu_flags, resolve

AMX = frozenset({"fpu", "avx512f", "amx_bf16", "amx_tile"})
AVX512_BF16 = frozenset({"avx512f", "avx512_bf16"})
EMULATED = frozenset({"fpu", "avx2", "avx512f"})  # e.g. an AMD EPYC reporting no bfloat16 instructions


@pytest.mark.parametrize(("flags", "gpus", "expected"), [
    (AMX, 0, "mixed_bfloat16"), (AVX512_BF16, 0, "mixed_bfloat16"), (EMULATED, 0, "float32"),
    (frozenset(), 0, "float32"), (AMX, 1, "float32"),
])
def test_auto_picks_bfloat16_only_where_it_is_native(flags, gpus, expected):
    assert resolve("auto", flags, gpus) == expected


@pytest.mark.parametrize("chosen", ["float32", "mixed_bfloat16"])
def test_a_chosen_precision_is_kept_on_any_machine(chosen):
    assert resolve(chosen, AMX, 0) == resolve(chosen, EMULATED, 1) == chosen


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 amx_bf16 avx512_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu sse2 amx_bf16 avx512_bf16\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "amx_bf16", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_the_model_is_built_in_the_precision_auto_stands_for_here():
    model = build_model(ModelConfig(preset="seed", precision="auto"), 3, 32)
    conv = next(layer for layer in model.layers if layer.name.startswith("conv"))
    assert conv.dtype_policy.name == resolve("auto")
    assert model.get_layer("label").dtype_policy.name == "float32"  # outputs stay float32


def test_the_seed_preset_stays_in_float32():
    assert load_config("seed").model.precision == "float32"
