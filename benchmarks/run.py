"""Benchmarks of autoanchor against a faithful re-implementation of yolov5's search.

    python benchmarks/run.py [--quick] [--only speed|quality|memory] [--out results.md]

Prints markdown tables (see benchmarks/README.md for what each column means).
Speed and memory measurements run each in a fresh subprocess of this script
(``--worker``), so that peak memory and timings of one run do not leak into the
next. Quality runs in this process.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import datasets as bench_data  # noqa: E402  (benchmarks/datasets.py)
from evaluate import iou_kmeans, kept_boxes, score  # noqa: E402
from reference import reference_kmean_anchors  # noqa: E402

RESULT_MARK = "@@RESULT "
GEN = 1000
THR = 4.0


# --------------------------------------------------------------------------- helpers


def import_kmean_anchors():
    """autoanchor's ``kmean_anchors`` (from the package, else from ``autoanchor.core.search``) or None."""
    try:
        from autoanchor import kmean_anchors
    except ImportError:
        try:
            from autoanchor.core.search import kmean_anchors
        except ImportError:
            return None
    return kmean_anchors


def autoanchor_available() -> str | None:
    """None if autoanchor's ``kmean_anchors`` can be imported, else the reason."""
    if import_kmean_anchors() is None:
        return "neither autoanchor.kmean_anchors nor autoanchor.core.search.kmean_anchors can be imported"
    return None


def _status_kb() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount = line.split(":")
                values[key] = int(amount.split()[0])
    return values


def rss_mb() -> float:
    return _status_kb()["VmRSS"] / 1024


def peak_mb() -> float:
    return _status_kb()["VmHWM"] / 1024


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def machine_info(threads: int) -> list[str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "unknown"
    try:
        with open("/proc/meminfo") as meminfo:
            memory = f"{int(meminfo.readline().split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    import scipy

    try:
        import autoanchor

        autoanchor_version = autoanchor.__version__
    except ImportError:
        autoanchor_version = "not importable"
    kmean_anchors = import_kmean_anchors()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        "## Machine",
        "",
        f"- CPU: {cpu}; {os.cpu_count()} logical cores ({affinity} usable); RAM {memory}",
        f"- torch {torch.__version__} ({threads} threads), numpy {np.__version__}, scipy {scipy.__version__}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- autoanchor {autoanchor_version}"
        + ("" if kmean_anchors is None else f" (kmean_anchors defined in `{kmean_anchors.__module__}`)"),
        f"- 1-minute load average at start: {os.getloadavg()[0]:.2f} (other processes compete for the cores "
        "if this is well above 0; timings are wall-clock)",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "",
    ]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def boxes_label(n: int) -> str:
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1e6:g}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def build_dataset(spec: dict):
    """The in-memory dataset a measurement runs on, and its Boxes (for scoring)."""
    base = bench_data.load_shared(spec["base"])
    boxes = bench_data.tile(base, spec["n_boxes"], variant=spec["variant"], seed=spec.get("data_seed", 0))
    if spec["kind"] == "yolov5":
        return bench_data.to_yolov5_style(boxes), boxes
    if spec["impl"] == "autoanchor":
        return bench_data.to_autoanchor(boxes), boxes
    return boxes, boxes


# --------------------------------------------------------------------------- worker


def worker(spec: dict) -> dict:
    """One timed run in this (fresh) process; returns figures as a JSON-able dict."""
    torch.set_num_threads(spec["threads"])
    kmean_anchors = import_kmean_anchors()  # imported for both, so both have the same baseline
    gc.collect()
    baseline = rss_mb()
    dataset, boxes = build_dataset(spec)
    gc.collect()
    before = rss_mb()
    peak_reset = reset_peak()

    load_before = os.getloadavg()[0]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if spec["impl"] == "autoanchor":
        anchors = kmean_anchors(
            dataset, n=spec["n"], img_size=spec["img_size"], thr=THR, gen=spec["gen"], verbose=False,
            seed=spec["seed"],
        )
        measured = time.perf_counter() - t0
        seconds, extra = measured, {}
    else:
        wh_px = bench_data.letterbox_wh(dataset, spec["img_size"])
        letterbox_seconds = time.perf_counter() - t0
        result = reference_kmean_anchors(
            wh_px, spec["n"], thr=THR, gen=spec["gen"], img_size=spec["img_size"], seed=spec["seed"],
            max_generations=spec.get("ref_gens"),
        )
        measured = time.perf_counter() - t0
        anchors = result.anchors
        seconds = letterbox_seconds + result.seconds_for(spec["gen"])
        extra = {
            "generations_run": result.generations,
            "self_fitness": result.fitness,
            "kmeans_fitness": result.kmeans_fitness,
            "phase_seconds": {"letterbox": letterbox_seconds, **result.seconds},
            "kmeans_fallback": result.kmeans_fallback,
        }
    peak = peak_mb()
    cpu_seconds = time.process_time() - cpu0
    load_after = os.getloadavg()[0]

    wh = kept_boxes(bench_data.letterbox_wh(boxes, spec["img_size"]))
    scores = score(wh, np.asarray(anchors), thr=THR)
    return {
        **spec,
        **extra,
        "seconds": seconds,
        "measured_seconds": measured,
        "cpu_seconds": cpu_seconds,
        "load_1min": [load_before, load_after],
        "extrapolated": spec["impl"] == "reference" and extra["generations_run"] < spec["gen"],
        "fitness": scores.fitness,
        "bpr": scores.bpr,
        "avg_iou": scores.avg_iou,
        "n_kept": len(wh),
        "anchors": np.asarray(anchors, dtype=np.float64).round(2).tolist(),
        "baseline_mb": baseline,
        "dataset_mb": before - baseline,
        "peak_mb": peak,
        "peak_over_baseline_mb": peak - baseline,
        "peak_over_dataset_mb": peak - before,
        "peak_reset": peak_reset,
    }


def run_worker(spec: dict) -> dict:
    """Run :func:`worker` in a fresh interpreter and return its result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark worker failed for {spec}:\n{done.stderr[-4000:]}")
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    raise RuntimeError(f"benchmark worker printed no result for {spec}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


# --------------------------------------------------------------------------- sections


@dataclass
class Options:
    quick: bool
    threads: int
    base: str
    kind: str
    ref_gens: int | None
    speed_sizes: list[int]
    memory_sizes: list[int]
    seeds: int
    ref_seeds: int
    long_gen: int
    long_seeds: int
    iou_kmeans_seeds: int
    iou_ks: list[int]
    autoanchor: bool
    repeats: int = 1
    repeat_max_boxes: int = 500_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _median_run(specs: list[dict]) -> dict:
    """Run each spec in a fresh process and return the run with the median time (all times attached)."""
    runs = sorted((run_worker(spec) for spec in specs), key=lambda run: run["seconds"])
    median = dict(runs[len(runs) // 2])
    median["all_seconds"] = [run["seconds"] for run in runs]
    return median


def speed_section(opt: Options) -> list[str]:
    rows, notes = [], []
    any_extrapolated = False
    for n_boxes in opt.speed_sizes:
        for variant in bench_data.VARIANTS:
            common = dict(
                base=opt.base, n_boxes=n_boxes, variant=variant, kind=opt.kind, n=9, img_size=640, gen=GEN,
                seed=0, threads=opt.threads,
            )
            repeats = opt.repeats if n_boxes <= opt.repeat_max_boxes else 1
            log(f"speed: reference on {boxes_label(n_boxes)} {variant} (x{repeats}) ...")
            ref = _median_run([{**common, "impl": "reference", "ref_gens": opt.ref_gens}] * repeats)
            aa = _median_run([{**common, "impl": "autoanchor"}] * repeats) if opt.autoanchor else None
            any_extrapolated |= ref["extrapolated"]
            ref_time = f"{ref['seconds']:.1f}" + ("*" if ref["extrapolated"] else "")
            name = f"{opt.base} tiled, {variant}"
            if aa is None:
                aa_cells = ["n/a", "n/a", "n/a", "n/a"]
            else:
                aa_cells = [
                    f"{aa['seconds']:.2f}",
                    f"{ref['seconds'] / aa['seconds']:.0f}x",
                    f"{aa['fitness']:.4f}",
                    f"{aa['peak_mb']:.0f} / {aa['peak_over_baseline_mb']:.0f}",
                ]
            rows.append(
                [name, f"{n_boxes:,}", ref_time, aa_cells[0], aa_cells[1], f"{ref['fitness']:.4f}", aa_cells[2],
                 aa_cells[3], f"{ref['peak_mb']:.0f}"]
            )
            phases = ref["phase_seconds"]
            notes.append(
                f"- {boxes_label(n_boxes)} {variant}: reference letterbox {phases['letterbox']:.2f} s, filter "
                f"{phases['filter']:.2f} s, k-means {phases['kmeans']:.1f} s, {ref['generations_run']} generations "
                f"{phases['evolve']:.1f} s ({1000 * phases['evolve'] / max(ref['generations_run'], 1):.1f} ms each)"
                + ("; k-means fell back to a random start" if ref["kmeans_fallback"] else "")
                + (f"; runs {', '.join(f'{t:.1f}' for t in ref['all_seconds'])} s (median shown)"
                   if len(ref["all_seconds"]) > 1 else "")
                + f"; CPU {ref['cpu_seconds']:.1f} s for {ref['measured_seconds']:.1f} s measured wall, "
                f"load {ref['load_1min'][0]:.2f}->{ref['load_1min'][1]:.2f}"
                + ("" if aa is None else ". autoanchor "
                   + (f"runs {', '.join(f'{t:.2f}' for t in aa['all_seconds'])} s (median shown), "
                      if len(aa["all_seconds"]) > 1 else "")
                   + f"CPU {aa['cpu_seconds']:.2f} s for {aa['seconds']:.2f} s wall, "
                   f"load {aa['load_1min'][0]:.2f}->{aa['load_1min'][1]:.2f}, BPR {aa['bpr']:.4f} "
                   f"(reference {ref['bpr']:.4f})")
            )
    header = [
        "dataset", "boxes", "reference s", "autoanchor s", "speed-up", "reference fitness", "autoanchor fitness",
        "autoanchor peak MB (total / above imports)", "reference peak MB",
    ]
    kind = "autoanchor.BoxSizes" if opt.kind == "boxsizes" else "yolov5-style .shapes/.labels object"
    lines = [
        "## Speed",
        "",
        f"End to end, gen={GEN}, n=9, img_size=640, thr={THR}, seed 0, {opt.threads} torch threads; dataset in memory "
        f"as {kind}; letterboxing, k-means and all generations timed. Rows up to {opt.repeat_max_boxes:,} boxes: "
        f"each side run {opt.repeats} times in fresh processes, the median run shown; larger rows: one run each.",
        "",
        *table(header, rows),
        "",
        *notes,
    ]
    if any_extrapolated:
        lines += [
            "",
            f"\\* extrapolated: the reference ran k-means and {opt.ref_gens} generations; its generation time was "
            f"scaled linearly to {GEN}. Its fitness in those rows is that of the shortened "
            f"{opt.ref_gens}-generation run (lower than a full run would reach).",
        ]
    return lines + [""]


def memory_section(opt: Options) -> list[str]:
    if not opt.autoanchor:
        return ["## Memory", "", "skipped: autoanchor.kmean_anchors is not available.", ""]
    rows = []
    reset_ok = True
    previous = None
    for n_boxes in opt.memory_sizes:
        log(f"memory: autoanchor on {boxes_label(n_boxes)} jitter ...")
        res = run_worker(
            dict(base=opt.base, n_boxes=n_boxes, variant="jitter", kind=opt.kind, n=9, img_size=640, gen=GEN,
                 seed=0, threads=opt.threads, impl="autoanchor")
        )
        reset_ok &= res["peak_reset"]
        if previous is None:
            marginal = ["", ""]
        else:
            added = (n_boxes - previous["n_boxes"]) / 1e6
            marginal = [
                f"{(res['seconds'] - previous['seconds']) / added:.2f}",
                f"{(res['peak_over_baseline_mb'] - previous['peak_over_baseline_mb']) / added:.0f}",
            ]
        rows.append([
            f"{n_boxes:,}", f"{res['seconds']:.2f}", f"{res['cpu_seconds']:.2f}", f"{res['dataset_mb']:.0f}",
            f"{res['peak_over_baseline_mb']:.0f}", f"{res['peak_over_dataset_mb']:.0f}", f"{res['peak_mb']:.0f}",
            *marginal, f"{res['load_1min'][0]:.1f}", f"{res['fitness']:.4f}",
        ])
        previous = res
    header = [
        "boxes", "seconds", "CPU seconds", "dataset MB", "peak MB above imports", "peak MB above dataset",
        "peak RSS MB", "added s per added 1M boxes", "added peak MB per added 1M boxes", "load", "fitness",
    ]
    return [
        "## Memory",
        "",
        f"autoanchor.kmean_anchors(gen={GEN}, seed=0) on {opt.base} tiled with jitter; each size in a fresh process. "
        "'Above imports' subtracts the RSS after `import torch, autoanchor` (it includes the dataset object); "
        "'above dataset' subtracts the RSS once the dataset is built. The 'added' columns compare each row with "
        "the previous one: roughly constant values mean linear growth. Load = 1-minute load average at the start.",
        "",
        *table(header, rows),
        "",
    ] + ([] if reset_ok else ["Note: the peak could not be reset after building the dataset (no /proc/self/clear_refs); "
                              "peaks include the tiling temporaries.", ""])


@dataclass
class QualityCase:
    dataset: str
    img_size: int
    n: int


QUALITY_CASES_FULL = [
    QualityCase("coco128", 640, 9),
    QualityCase("voc2012_trainval", 640, 9),
    QualityCase("voc2012_trainval", 320, 9),
    QualityCase("coco128", 1280, 12),
    QualityCase("voc2012_trainval", 1280, 12),
]
QUALITY_CASES_QUICK = QUALITY_CASES_FULL[:2]


def _autoanchor_runs(dataset, wh: np.ndarray, case: QualityCase, seeds, gen: int, metric: str) -> list[dict]:
    kmean_anchors = import_kmean_anchors()
    runs = []
    for seed in seeds:
        t0 = time.perf_counter()
        kwargs = {} if metric == "ratio" else {"metric": metric}
        anchors = kmean_anchors(
            dataset, n=case.n, img_size=case.img_size, thr=THR, gen=gen, verbose=False, seed=seed, **kwargs
        )
        seconds = time.perf_counter() - t0
        runs.append({"seed": seed, "scores": score(wh, anchors, thr=THR), "seconds": seconds})
    return runs


def _long_runs(dataset, wh: np.ndarray, case: QualityCase, seeds, gen: int, metric: str) -> list[dict]:
    """The long search: every budget of autoanchor's search scaled by ``gen / GEN``.

    The generations, the relocation hops and kicks (and the patience for them) and the k-means starts all
    grow by the same factor, so "20x longer" means 20x the search effort, not only more generations.
    """
    from autoanchor.core.search import search_anchors

    factor = max(1, gen // GEN)
    pixel_wh = dataset.pixel_wh(case.img_size)
    runs = []
    for seed in seeds:
        t0 = time.perf_counter()
        result = search_anchors(
            pixel_wh, case.n, thr=THR, gen=gen, metric=metric, seed=seed,
            hops=48 * factor, kicks=24 * factor, patience=3 * factor, starts=min(4 * factor, 40),
        )
        seconds = time.perf_counter() - t0
        runs.append({"seed": seed, "scores": score(wh, result.anchors.numpy(), thr=THR), "seconds": seconds})
    return runs


def _fmt_values(values: list[float], digits: int = 4) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in values)


def quality_section(opt: Options) -> list[str]:
    cases = QUALITY_CASES_QUICK if opt.quick else QUALITY_CASES_FULL
    seeds = list(range(opt.seeds))
    long_seeds = list(range(opt.long_seeds))
    rows, detail = [], []
    for case in cases:
        boxes = bench_data.load_shared(case.dataset)
        wh_px = bench_data.letterbox_wh(boxes, case.img_size)
        wh = kept_boxes(wh_px)
        label = f"{case.dataset} @{case.img_size}, n={case.n}"
        log(f"quality: {label}: reference x{opt.ref_seeds} ...")
        ref = []
        for seed in range(opt.ref_seeds):
            t0 = time.perf_counter()
            result = reference_kmean_anchors(wh_px, case.n, thr=THR, gen=GEN, img_size=case.img_size, seed=seed)
            ref.append({"seed": seed, "scores": score(wh, result.anchors, thr=THR),
                        "seconds": time.perf_counter() - t0})
        ref_fit = [r["scores"].fitness for r in ref]
        ref_best = max(ref_fit)
        if not opt.autoanchor:
            rows.append([label, f"{len(wh):,}", _fmt_values(ref_fit), "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"])
            continue
        dataset = bench_data.to_autoanchor(boxes)
        log(f"quality: {label}: autoanchor x{len(seeds)}, long search {len(long_seeds)} x gen={opt.long_gen} ...")
        aa = _autoanchor_runs(dataset, wh, case, seeds, GEN, "ratio")
        long = _long_runs(dataset, wh, case, long_seeds, opt.long_gen, "ratio")
        aa_fit = [r["scores"].fitness for r in aa]
        long_best = max(r["scores"].fitness for r in long)
        gap = round(100 * (long_best - min(aa_fit)) / long_best, 2) + 0.0
        rows.append([
            label, f"{len(wh):,}", _fmt_values(ref_fit), _fmt_values(aa_fit), f"{max(aa_fit) - min(aa_fit):.4f}",
            f"{long_best:.4f}", f"{gap:.2f}%", "yes" if min(aa_fit) >= ref_best else "**no**",
            f"{np.mean([r['scores'].avg_iou for r in ref]):.4f} / {np.mean([r['scores'].avg_iou for r in aa]):.4f}",
        ])
        detail.append(
            f"- {label}: autoanchor {np.mean([r['seconds'] for r in aa]):.2f} s per run (gen={GEN}), "
            f"long search {np.mean([r['seconds'] for r in long]):.1f} s per run; reference "
            f"{np.mean([r['seconds'] for r in ref]):.1f} s per run; BPR reference "
            f"{_fmt_values([r['scores'].bpr for r in ref])}, autoanchor {_fmt_values([r['scores'].bpr for r in aa])}"
        )
    header = [
        "dataset", "boxes", f"reference fitness (seeds 0-{opt.ref_seeds - 1})",
        f"autoanchor fitness (seeds 0-{opt.seeds - 1})", "spread", f"long search (best of {opt.long_seeds}, "
        f"{opt.long_gen // GEN}x gen, hops, starts)", "gap of worst seed to long", "every seed >= reference best", "Avg IoU ref / autoanchor",
    ]
    lines = [
        "## Quality: ratio metric (yolov5 fitness)",
        "",
        f"gen={GEN}, thr={THR}; all anchors scored by one float64 evaluator on the boxes with a side >= 2 px "
        "(letterboxed to the given size). Spread = max - min over autoanchor's seeds.",
        "",
        *table(header, rows),
        "",
        *detail,
        "",
    ]
    if opt.iou_ks:
        lines += iou_section(opt)
    return lines


def iou_section(opt: Options) -> list[str]:
    case_dataset, img_size = "voc2012_trainval", 640
    boxes = bench_data.load_shared(case_dataset)
    wh_px = bench_data.letterbox_wh(boxes, img_size)
    wh = kept_boxes(wh_px)
    rows, detail = [], []
    for k in opt.iou_ks:
        case = QualityCase(case_dataset, img_size, k)
        log(f"quality (IoU): k={k}: plain 1-IoU k-means x{opt.iou_kmeans_seeds} x2 ...")
        plain = {}
        for update in ("median", "mean"):
            plain[update] = []
            for seed in range(opt.iou_kmeans_seeds):
                centres, iterations = iou_kmeans(wh, k, update=update, seed=seed)
                plain[update].append(score(wh, centres, thr=THR).avg_iou)
        ref = reference_kmean_anchors(wh_px, k, thr=THR, gen=GEN, img_size=img_size, seed=0)
        ref_iou = score(wh, ref.anchors, thr=THR).avg_iou
        cells = [
            f"{case_dataset} @{img_size}", str(k),
            f"{100 * max(plain['median']):.2f} / {100 * np.mean(plain['median']):.2f}",
            f"{100 * max(plain['mean']):.2f} / {100 * np.mean(plain['mean']):.2f}",
            f"{100 * ref_iou:.2f}",
        ]
        if opt.autoanchor:
            dataset = bench_data.to_autoanchor(boxes)
            log(f"quality (IoU): k={k}: autoanchor x{opt.seeds}, long {opt.long_seeds} x gen={opt.long_gen} ...")
            aa = _autoanchor_runs(dataset, wh, case, range(opt.seeds), GEN, "iou")
            long = _long_runs(dataset, wh, case, range(opt.long_seeds), opt.long_gen, "iou")
            aa_iou = [100 * r["scores"].avg_iou for r in aa]
            long_best = 100 * max(r["scores"].avg_iou for r in long)
            cells += [_fmt_values(aa_iou, 2), f"{long_best:.2f}", f"{round(long_best - min(aa_iou), 2) + 0.0:.2f}",
                      f"{min(aa_iou) - max(plain['median'] + plain['mean']) * 100:+.2f}"]
            detail.append(f"- k={k}: autoanchor {np.mean([r['seconds'] for r in aa]):.2f} s per run, long search "
                          f"{np.mean([r['seconds'] for r in long]):.1f} s per run")
        else:
            cells += ["n/a"] * 4
        rows.append(cells)
    header = [
        "dataset", "k", f"plain 1-IoU k-means, median (best / mean of {opt.iou_kmeans_seeds} seeds)",
        "plain 1-IoU k-means, mean (best / mean)", "reference (ratio search, seed 0)",
        f"autoanchor metric=iou (seeds 0-{opt.seeds - 1})", f"long search (best of {opt.long_seeds}, {opt.long_gen // GEN}x budget)",
        "gap of worst seed to long (points)", "worst seed minus best plain k-means (points)",
    ]
    return [
        "## Quality: IoU metric (Avg IoU, %)",
        "",
        "Avg IoU = mean over boxes of the IoU with the best anchor (YOLOv2). Plain k-means: distance 1 - IoU, "
        "random distinct boxes as the start, median or mean centre updates, until no assignment changes.",
        "",
        *table(header, rows),
        "",
        *detail,
        "",
    ]


# --------------------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        factor = 1_000_000 if part.endswith("m") else 1000 if part.endswith("k") else 1
        sizes.append(int(float(part.rstrip("mk")) * factor))
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer seeds, shorter long search")
    parser.add_argument("--only", choices=("speed", "quality", "memory"), help="run one section")
    parser.add_argument("--out", type=Path, help="also write the markdown to this file")
    parser.add_argument("--ref-gens", type=int, default=None,
                        help="run the reference for this many generations in the speed table and extrapolate its "
                             "time linearly to 1000 (default: all 1000; with --quick: 100)")
    parser.add_argument("--no-autoanchor", action="store_true", help="only run the reference (harness check)")
    parser.add_argument("--base", choices=bench_data.DATASETS, default="voc2012_trainval",
                        help="real set tiled for the speed and memory tables")
    parser.add_argument("--kind", choices=("boxsizes", "yolov5"), default="boxsizes",
                        help="how the dataset is handed over: an autoanchor.BoxSizes (default) or a yolov5-style "
                             "object with .shapes and per-image .labels")
    parser.add_argument("--speed-sizes", type=parse_sizes, help="e.g. 160k,2M (default 160k,2M; quick: 160k)")
    parser.add_argument("--memory-sizes", type=parse_sizes,
                        help="e.g. 100k,1M,2M,10M (default; quick: 100k,1M)")
    parser.add_argument("--seeds", type=int, help="autoanchor seeds 0..S-1 (default 10; quick 2)")
    parser.add_argument("--long-gen", type=int, help="generations of the long search (default 20000; quick 5000)")
    parser.add_argument("--long-seeds", type=int, help="seeds of the long search (default 3; quick 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="speed rows up to --repeat-max-boxes run each side this many times and report the "
                             "median run (default 3)")
    parser.add_argument("--repeat-max-boxes", type=parse_sizes, default=[500_000],
                        help="larger speed rows run once (default 500k)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = worker(json.loads(args.worker))
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0

    torch.set_num_threads(args.threads)
    missing = autoanchor_available()
    use_autoanchor = not args.no_autoanchor and missing is None
    quick = args.quick
    opt = Options(
        quick=quick,
        threads=args.threads,
        base=args.base,
        kind=args.kind,
        ref_gens=args.ref_gens if args.ref_gens is not None else (100 if quick else None),
        speed_sizes=args.speed_sizes or ([160_000] if quick else [160_000, 2_000_000]),
        memory_sizes=args.memory_sizes or ([100_000, 1_000_000] if quick else [100_000, 1_000_000, 2_000_000,
                                                                                10_000_000]),
        seeds=args.seeds or (2 if quick else 10),
        ref_seeds=3,
        long_gen=args.long_gen or (5000 if quick else 20000),
        long_seeds=args.long_seeds or (1 if quick else 3),
        iou_kmeans_seeds=3 if quick else 10,
        iou_ks=[5] if quick else [5, 9],
        autoanchor=use_autoanchor,
        repeats=max(1, args.repeats),
        repeat_max_boxes=args.repeat_max_boxes[0],
    )

    lines = ["# autoanchor benchmarks" + (" (quick mode)" if quick else ""), "", *machine_info(args.threads)]
    if not use_autoanchor:
        reason = "--no-autoanchor" if args.no_autoanchor else f"cannot import autoanchor.kmean_anchors ({missing})"
        lines += [f"autoanchor columns skipped: {reason}.", ""]
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines += [f"Command: `{command.strip()}`", ""]

    def emit(new_lines: list[str]) -> None:
        print("\n".join(new_lines), flush=True)
        lines.extend(new_lines)
        if args.out:
            args.out.write_text("\n".join(lines) + "\n")

    print("\n".join(lines), flush=True)
    started = time.perf_counter()
    sections = {"speed": speed_section, "memory": memory_section, "quality": quality_section}
    for name, section in sections.items():
        if args.only in (None, name):
            emit(section(opt))
    emit([f"Total benchmark time: {time.perf_counter() - started:.0f} s", ""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
