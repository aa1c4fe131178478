"""Training throughput of every registry model: fp32 versus bf16 autocast + channels_last.

For each model and precision mode, in a fresh child process (so peak memory belongs to
that configuration alone): build the model, then time ``steps`` training steps of
forward + cross-entropy loss + backward on a random batch (default 4 × 3 × 256 × 256,
2 classes) after ``warmup`` untimed steps. The optimizer step is not included.

Also lists each model's parameters and forward GFLOPs per image at the benchmark size
(``segkit.models.describe_model``: convolutions only, multiply-add = 2), so speed can be
read against work. Reports images/s from the fastest timed step (other load on a shared machine only adds
time; the median is kept in the JSON), CPU seconds per image, and peak memory. With
``--repeat N`` each configuration runs in N fresh processes and the median run is shown:
on a shared VM one process can be 1.5× slower than the next for reasons outside it.
Memory: on CUDA the allocator's peak, elsewhere the child's peak resident set size
(ru_maxrss; its growth over the size right after ``import torch`` is in the JSON). Valid-padding models run at the smallest valid input
size >= ``--size`` (268 for 256). Run:

    python benchmarks/models.py [--models unet,unet-tiny] [--modes fp32,bf16-cl]
                                [--steps 3] [--warmup 1] [--batch 4] [--size 256]
                                [--repeat 1] [--device auto] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time

MODES = ("fp32", "bf16-cl")


def _rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _run_one(config: dict) -> dict:
    """Child process body: time one (model, mode) pair and return its numbers."""
    import torch

    baseline = _rss_mib()
    from segkit.devices import Runtime, resolve_device
    from segkit.losses import build_loss
    from segkit.models import build_model
    from segkit.models.profile import example_input_size

    if config["threads"]:
        torch.set_num_threads(config["threads"])
    torch.manual_seed(0)
    device = resolve_device(config["device"])
    if config["mode"] == "fp32":
        runtime = Runtime(device, None, channels_last=False)
    else:
        dtype = torch.bfloat16
        runtime = Runtime(device, dtype, channels_last=device.type in ("cpu", "cuda"))
    model = runtime.prepare_model(build_model(config["model"], 3, 2)).train()
    size = example_input_size(model, config["size"])
    out_size = model.output_size(size) if hasattr(model, "output_size") else size
    images = runtime.prepare_input(torch.randn(config["batch"], 3, size, size))
    target = torch.randint(0, 2, (config["batch"], out_size, out_size), device=device)
    loss_fn = build_loss("ce").to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> tuple[float, float]:
        start, start_cpu = time.perf_counter(), time.process_time()
        model.zero_grad(set_to_none=True)
        with runtime.autocast():
            outputs = model(images)
        loss_fn(outputs, target).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, time.process_time() - start_cpu

    for _ in range(config["warmup"]):
        step()
    times, cpu_times = zip(*(step() for _ in range(config["steps"])), strict=True)
    result = {
        **config,
        "input_size": size,
        "step_seconds": [round(t, 4) for t in times],
        "step_cpu_seconds": [round(t, 4) for t in cpu_times],
        # Best step: other processes on a shared machine only ever add time.
        "images_per_s": config["batch"] / min(times),
        "images_per_s_median": config["batch"] / statistics.median(times),
        "cpu_seconds_per_image": min(cpu_times) / config["batch"],
        "peak_rss_mib": _rss_mib(),
        "rss_growth_mib": _rss_mib() - baseline,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def _child(config: dict, queue: multiprocessing.Queue) -> None:
    try:
        queue.put(_run_one(config))
    except Exception as error:  # report, don't hang the parent
        queue.put({**config, "error": f"{type(error).__name__}: {error}"})


def run_isolated(config: dict) -> dict:
    """Run one configuration in a fresh spawned process and return its result dict."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(config, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def machine_description() -> str:
    """CPU model, core count and torch version, for the results table."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from segkit.devices import cpu_supports_bf16

    return (
        f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
        f"oneDNN bf16 {'yes' if cpu_supports_bf16() else 'no'}, "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )


def markdown_table(results: list[dict]) -> str:
    """A Markdown table: one row per model, fp32 and bf16-cl side by side."""
    by_model: dict[str, dict[str, dict]] = {}
    for result in results:
        by_model.setdefault(result["model"], {})[result["mode"]] = result
    memory_key = "cuda_peak_mib" if any("cuda_peak_mib" in r for r in results) else "peak_rss_mib"
    memory_label = "CUDA peak MiB" if memory_key == "cuda_peak_mib" else "peak RSS MiB"
    lines = [
        f"| model | input | params | fwd GFLOPs/img | fp32 img/s | bf16+CL img/s | speed-up | fp32 CPU s/img "
        f"| bf16+CL CPU s/img | fp32 {memory_label} | bf16+CL {memory_label} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, modes in by_model.items():
        fp32, fast = modes.get("fp32", {}), modes.get("bf16-cl", {})

        def cell(result: dict, key: str, fmt: str) -> str:
            if "error" in result:
                return "error"
            return format(result[key], fmt) if key in result else "-"

        speedup = (
            f"{fast['images_per_s'] / fp32['images_per_s']:.2f}×"
            if "images_per_s" in fp32 and "images_per_s" in fast
            else "-"
        )
        size = (fp32 or fast).get("input_size", "-")
        info = (fp32 or fast).get("gflops_per_image")
        gflops = "-" if info is None else f"{info:.1f}"
        params = (fp32 or fast).get("parameters")
        params_cell = "-" if params is None else f"{params / 1e6:.2f}M"
        lines.append(
            f"| {model} | {size}² | {params_cell} | {gflops} "
            f"| {cell(fp32, 'images_per_s', '.2f')} "
            f"| {cell(fast, 'images_per_s', '.2f')} | {speedup} "
            f"| {cell(fp32, 'cpu_seconds_per_image', '.2f')} "
            f"| {cell(fast, 'cpu_seconds_per_image', '.2f')} "
            f"| {cell(fp32, memory_key, '.0f')} | {cell(fast, memory_key, '.0f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from segkit.models import list_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(list_models()), help="comma-separated")
    parser.add_argument("--modes", default=",".join(MODES), help=f"from {', '.join(MODES)}")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="fresh processes per configuration; median reported"
    )
    parser.add_argument("--json", dest="json_path", help="also write the raw results here")
    args = parser.parse_args(argv)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(models) - set(list_models())) + sorted(set(modes) - set(MODES))
    if unknown or args.steps < 1 or args.batch < 1 or args.repeat < 1:
        parser.error(
            f"unknown {unknown}; models: {', '.join(list_models())}; modes: {', '.join(MODES)}"
            if unknown
            else "--steps, --batch and --repeat must be >= 1"
        )
    machine = machine_description()
    print(machine, flush=True)
    from segkit.models import describe_model

    results = []
    for model in models:
        info = describe_model(model, size=args.size)
        for mode in modes:
            config = {
                "model": model,
                "mode": mode,
                "steps": args.steps,
                "warmup": args.warmup,
                "batch": args.batch,
                "size": args.size,
                "device": args.device,
                "threads": args.threads,
            }
            runs = [run_isolated(config) for _ in range(args.repeat)]
            ok = sorted((r for r in runs if "error" not in r), key=lambda r: r["images_per_s"])
            # The median run, so one disturbed process neither helps nor hurts.
            result = ok[len(ok) // 2] if len(ok) == len(runs) else runs[0]
            result["images_per_s_runs"] = [round(r.get("images_per_s", 0.0), 3) for r in runs]
            result["gflops_per_image"] = info.gflops
            result["parameters"] = info.parameters
            results.append(result)
            if "error" in result:
                print(f"{model:14s} {mode:8s} error: {result['error']}", flush=True)
            else:
                print(
                    f"{model:14s} {mode:8s} {result['images_per_s']:7.2f} img/s  "
                    f"{info.gflops:6.1f} GFLOPs/img  "
                    f"runs {result['images_per_s_runs']}  "
                    f"CPU {result['cpu_seconds_per_image']:.2f} s/img  "
                    f"peak RSS {result['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    print()
    print(markdown_table(results))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump({"machine": machine, "results": results}, handle, indent=2)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
