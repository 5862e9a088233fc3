"""The generated block of docs/benchmarks.md (between its `bench:start` and `bench:end` markers), rendered from
a results dict as bench/run.py saves it in bench/results/: the table of figures P0-P9, then each figure's detail."""

from __future__ import annotations

import json
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:start -->", "<!-- bench:end -->"


def p0_rows(r: dict) -> list[str]:
    f32, bf16 = r["P0"]["float32"], r["P0"]["mixed_bfloat16"]
    return [
        f"| P0 | training FLOP/s of `seed` / matmul peak, float32, batch {r['P0']['batch']} (throughput mode) | "
        f"**{r['P0']['ratio']}** ({f32['throughput_img_s']} img/s; peak {f32['matmul_peak_gflops']} GFLOP/s, "
        f"{r['P0']['forward_mflop_per_image']} MFLOP/image forward) | >= 0.5 |",
        f"| P0 | same at the preset's batch 32: ours, the plain script | {f32['P0_ours']}, {f32['P0_plain']} | |",
        f"| P0 | mixed_bfloat16 vs the bf16 matmul peak: batch {r['P0']['batch']}, batch 32 | "
        f"{bf16['P0_throughput']} ({bf16['throughput_img_s']} img/s), {bf16['P0_ours']} "
        f"(peak {bf16['matmul_peak_gflops']} GFLOP/s) | |",
    ]


def p0_default_rows(r: dict) -> list[str]:
    if "P0-default" not in r:  # results measured before this figure existed
        return []
    p0 = r["P0-default"]
    batches = ", ".join(f"batch {batch}: {b['share']} ({b['img_s']} img/s)" for batch, b in p0["batches"].items())
    return [f"| P0 | training FLOP/s of `default` at {p0['size']} px / matmul peak, float32, batch {p0['batch']} | "
            f"**{p0['ratio']}** ({batches}; {p0['forward_mflop_per_image']} MFLOP/image forward) | {p0['goal']} |"]


def p1_rows(r: dict) -> list[str]:
    f32, bf16 = r["P0"]["float32"], r["P0"]["mixed_bfloat16"]
    return [
        f"| P1 | ours / plain images/s, float32 (batch 32) | **{r['P1']['ratio']}** ({f32['ours_img_s']} vs "
        f"{f32['plain_img_s']}) | >= 1.0 |",
        f"| P1 | ours mixed_bfloat16 / plain float32 (batch 32) | **{r['P1']['bf16_ratio']}** ({bf16['ours_img_s']} "
        f"vs {bf16['plain_img_s']}) | >= 2.0 |",
        f"| P1 | the `default` preset (our model, with augmentation): mixed_bfloat16 / float32 images/s | "
        f"{round(bf16['default_preset_img_s'] / f32['default_preset_img_s'], 3)} ({bf16['default_preset_img_s']} vs "
        f"{f32['default_preset_img_s']}) | reported |",
    ]


def p2_rows(r: dict) -> list[str]:
    return [f"| P2 | tf.data alone / training images/s, `default` preset, float32 | **{r['P2']['ratio']}** ({r['P2']['pipeline_img_s']} vs "
            f"{r['P2']['train_img_s']}) | >= 5 |"]


def p3_rows(r: dict) -> list[str]:
    return [
        f"| P3 | warm re-run / cold run of `train_flow` (in one process) | **{r['P3']['ratio']}** ({r['P3']['warm_s']} s "
        f"vs {r['P3']['cold_s']} s; trained in warm run: {r['P3']['trained_in_warm_run']}) | <= 0.10, no training |",
        f"| P3b | fully cached `multitask train` from the shell / a one-task flow started the same way | "
        f"**{r['P3b']['ratio']}** (medians of {r['P3b']['warm_s']} s vs {r['P3b']['trivial_s']} s) | <= 1.5 |",
    ]


def p4_rows(r: dict) -> list[str]:
    return [f"| P4 | spread of ms/image over 1k-16k images; of peak RSS | **{r['P4']['ratio']:+.1%}**; "
            f"{r['P4']['rss_spread']:+.1%} | within 15%; flat |"]


def p5_rows(r: dict) -> list[str]:
    return [f"| P5 | the default recipe, no flag, on `shapes`: test accuracy, mean IoU, IoU>=0.5 | "
            f"{r['P5']['value']['accuracy']}, {r['P5']['value']['mean_iou']}, {r['P5']['value']['iou50']} | "
            "(curve below) |"]


def p6_rows(r: dict) -> list[str]:
    p6 = r["P6"]
    points = "; ".join(f"{name} accuracy {b['points']['accuracy']:+}, mean IoU {b['points']['mean_iou']:+}"
                       for name, b in p6["datasets"].items())
    return [f"| P6 | mixed_bfloat16 - float32, test points, default preset, {p6['seeds']} seeds, {p6['epochs']} epochs, "
            f"{p6['train_images']} training images | **{p6['value']:+}** worst ({points}) | >= -0.5 |"]


def p7_rows(r: dict) -> list[str]:
    return [f"| P7 | cold `multitask train` (default recipe, no flag) / its training time | **{r['P7']['ratio']}** "
            f"({r['P7']['wall_s']} s vs {r['P7']['train_s']} s; {r['P7']['training']['epochs']} epochs, "
            f"{r['P7']['training']['stopped']}) | <= 1.3 |"]


def p8_rows(r: dict) -> list[str]:
    return [f"| P8 | scoring server / in-process p50, 1 image | **{r['P8']['ratio']}** ({r['P8']['server_batch1']['p50_ms']} "
            f"vs {r['P8']['in_process_batch1']['p50_ms']} ms) | reported |"]


def _shown(value) -> str:
    return "not reached" if value is None else str(value)


def p9_rows(r: dict) -> list[str]:
    if "P9" not in r:
        return []
    p9 = r["P9"]
    cells = "; ".join(f"{name} {_shown(block['default']['to_target_min'])} / {block['default']['to_stop_min']} min "
                      f"({block['default']['reached']} reached)" for name, block in p9["datasets"].items())
    ratio = "" if p9["ratio"] is None else f" **{p9['ratio']}** of the reference on photo;"
    return [f"| P9 | minutes of `multitask train` to the validation goals / to its end, median of seeds |{ratio} "
            f"{cells} (seed script {p9['seed_script_img_s']} img/s) | photo <= 0.5 of the reference |"]


ROWS = (p0_rows, p0_default_rows, p1_rows, p2_rows, p3_rows, p4_rows, p5_rows, p6_rows, p7_rows, p8_rows, p9_rows)  # the table's order


def table(results: dict) -> list[str]:
    """One row per figure (several for P0 and P1): id, what is measured, the value, the goal."""
    return ["| id | figure | value | goal |", "|---|---|---|---|", *(row for rows in ROWS for row in rows(results))]


def rounds_note(r: dict) -> str:
    f32, bf16 = r["P0"]["float32"], r["P0"]["mixed_bfloat16"]
    return (f"P1 rounds (images/s), alternating ours and plain: float32 ours {f32['ours_rounds']}, "
            f"plain {f32['plain_rounds']}; bf16 ours {bf16['ours_rounds']}, "
            f"plain {bf16['plain_rounds']}. P0 rounds (throughput images/s, then the matmul "
            f"peak measured right after it, GFLOP/s): float32 {f32.get('throughput_rounds', '-')}, "
            f"{f32.get('peak_rounds', '-')}.")


def profile_rows(profiles: list[dict]) -> list[str]:
    """bench/step_profile.py's parts as rows, one column per batch size."""
    def flat(profile: dict) -> list[tuple[str, float]]:  # the same parts in the same order in every profile
        if "parts_ms" in profile:
            return list(profile["parts_ms"].items())
        # results measured before the profile named its parts itself
        parts = [(f"forward + backward of {name}", ms) for name, ms in profile["layers_ms"].items()]
        whole = [(k.removesuffix("_ms"), v) for k, v in profile.items() if k.endswith("_ms") and k != "layers_ms"]
        return parts + whole
    columns = [flat(profile) for profile in profiles]
    batches = " | ".join(f"batch {profile['batch']}" for profile in profiles)
    return [f"| part | {batches} |",
            f"|---|{'---|' * len(profiles)}",
            *(f"| {row[0][0]} | {' | '.join(str(ms) for _, ms in row)} |" for row in zip(*columns))]


def p4_section(r: dict) -> list[str]:
    return [
        "P4 scaling (preset `seed`, epoch 2 of 2; peak RSS of a process that only trains; rounds in "
        "alternating order, each size's fastest kept):",
        "",
        "| training images | ms / image | each round | peak RSS (MB) |",
        "|---|---|---|---|",
        *(f"| {row['images']} | {row['ms_per_image']} | {row.get('rounds_ms_per_image', '')} | {row['peak_rss_mb']} |"
          for row in r["P4"]["rows"]),
    ]


def p5_section(r: dict) -> list[str]:
    return [
        "P5: the P7 run's validation curve (preset `default`, `shapes`, 3000 training images):",
        "",
        "| epoch | training minutes | val accuracy | val mean IoU |",
        "|---|---|---|---|",
        *(f"| {row['epoch']} | {row['train_minutes']} | {row['val_accuracy']} | {row['val_mean_iou']} |"
          for row in r["P5"]["rows"]),
    ]


def p0_default_section(r: dict) -> list[str]:
    if "P0-default" not in r:
        return []
    return ["", f"P0: where a float32 training step of the `default` model at {r['P0-default']['size']} px goes "
            "(each layer's forward and backward alone, then the losses, the optimizer, the whole step and the "
            "input pipeline; ms per step):", "", *profile_rows(r["P0-default"]["step_profile"])]


def p9_section(r: dict) -> list[str]:
    if "P9" not in r:
        return []
    rows = [(name, recipe, run) for name, block in r["P9"]["datasets"].items()
            for recipe, runs in block.items() for run in runs["runs"]]
    return ["", f"P9 runs (seed script {r['P9']['seed_script_img_s']} img/s in the same run; targets on validation: "
            f"{r['P9']['targets']}):", "",
            "| dataset | recipe | seed | epoch on target | min to target | min to stop | seed-script epochs to target, "
            "to stop | test accuracy, mean IoU |", "|---|---|---|---|---|---|---|---|",
            *(f"| {name} | {recipe} | {run['seed']} | {run['target_epoch'] or '-'} of {run['epochs']} | "
              f"{_shown(run['to_target_min'])} | {run['to_stop_min']} | {_shown(run['to_target_seed_epochs'])}, "
              f"{run['to_stop_seed_epochs']} | "
              f"{run['test_accuracy']}, {run['test_mean_iou']} |" for name, recipe, run in rows)]


def p6_section(r: dict) -> list[str]:
    return [
        "P6 runs (test accuracy / mean IoU per seed):",
        "",
        *(f"- {name}, {precision}: " + ", ".join(f"{run['accuracy']} / {run['mean_iou']}" for run in b[precision]["runs"])
          + f" ({b[precision]['train_seconds']} s of training each, mean)"
          for name, b in r["P6"]["datasets"].items() for precision in ("float32", "mixed_bfloat16")),
    ]


def markdown(results: dict) -> str:
    """The generated part of docs/benchmarks.md: every figure of the results."""
    m, r = results["machine"], results
    serving = {k: v for k, v in r["P8"].items() if k.startswith(("server", "in_process", "tflite"))}
    lines = [
        f"Measured by `make bench` (`python bench/run.py`) on {m['cpu']}, {m['cores']} cores, "
        f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, {m['date']}, in {r['seconds'] / 60:.0f} minutes. "
        "Raw numbers: `bench/results/`. Every figure in this block is written by the script.",
        "", *table(results),
        "", rounds_note(r),
        "",
        "P0: where a float32 training step of the `seed` model goes (bench/step_profile.py: each part "
        "alone, in a graph loop; ms per step):",
        "", *profile_rows(r["P0"]["step_profile"]),
        *p0_default_section(r),
        "", *p4_section(r),
        "", *p5_section(r),
        "", *p6_section(r),
        "", f"P8 (bench/serving.py): {json.dumps(serving)}",
        *p9_section(r),
    ]
    return "\n".join(lines)


def write_doc(results: dict, doc: Path = DOC) -> None:
    """Replace the generated block of `doc`, keeping the written sections around it."""
    text = doc.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    doc.write_text(text[:start] + BEGIN + "\n" + markdown(results) + "\n" + END + text[end:])
