"""Peak memory of a search with and without yolov5's scale augmentation (``scale=``).

    python benchmarks/memory.py [--boxes 2e6,1e7] [--calls search,check,kmean] [--scale 0.5]

Each measurement runs in a fresh Python process: VOC 2012 trainval's boxes (``shared/data``) tiled
to ``--boxes`` boxes over as many images, then one call, with ``gen=0`` (the evolution's cost does
not grow with the boxes; the memory does not depend on it). The figure is the growth of the
process's peak resident set during the call over its resident set before it, in MB (on Linux
the peak is reset just before the call, ``/proc/self/clear_refs``; elsewhere ``ru_maxrss``, whose
peak may still be the setup's):

- ``search``: ``search_anchors(wh, 9, gen=0, scale=...)`` on the letterboxed sizes (640 px);
- ``check``: ``check_anchors(sizes, model, gen=0, scale=...)`` on a 3-level yolov5-style toy head
  with anchors poor enough to be replaced;
- ``kmean``: ``kmean_anchors(sizes, gen=0, scale=...)``.

The table gives the plain run, the run under ``--scale`` and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np, torch
torch.set_num_threads(1)
warnings.simplefilter("ignore")
sys.path.insert(0, {here!r})
from datasets import shared_data_dir
from autoanchor import BoxSizes, check_anchors, load_boxes, search_anchors
from autoanchor.training.dropins import kmean_anchors

call, n, scale = {call!r}, {n}, {scale}
voc = load_boxes(str(shared_data_dir() / "voc2012_trainval.npz"))
rep = -(-n // len(voc.wh))
row = np.arange(n) % len(voc.wh)
image = np.arange(n) // len(voc.wh) * len(voc.shapes) + voc.image_index[row]
sizes = BoxSizes(np.tile(voc.shapes, (rep, 1)), voc.wh[row], image)
wh = sizes.pixel_wh(640) if call == "search" else None
if call == "check":
    from torch import nn

    class Detect(nn.Module):  # yolov5's Detect buffers: anchors in stride units, strides
        def __init__(self):
            super().__init__()
            self.register_buffer("anchors", torch.full((3, 3, 2), 0.5))
            self.register_buffer("stride", torch.tensor([8.0, 16.0, 32.0]))
            self.nl, self.na = 3, 3

    class Model(nn.Module):  # yolov5's layout: the head is model.model[-1]
        def __init__(self):
            super().__init__()
            self.model = nn.Sequential(Detect())

    model = Model()
def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024

try:  # Linux: reset the peak (VmHWM) so that it is the call's own, above the memory held before it
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before, peak_of = status_mb("VmRSS"), lambda: status_mb("VmHWM")
except OSError:  # elsewhere: the process's peak so far (the setup's temporaries may hide the call's)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_of = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
began = time.perf_counter()
if call == "search":
    search_anchors(wh, 9, gen=0, seed=0, scale=scale)
elif call == "check":
    check_anchors(sizes, model, gen=0, seed=0, scale=scale, verbose=False)
else:
    kmean_anchors(sizes, gen=0, seed=0, scale=scale, verbose=False)
print(json.dumps({{"mb": peak_of() - before, "seconds": time.perf_counter() - began}}))
"""


def measure(call: str, n: int, scale: float | None) -> dict:
    code = CHILD.format(here=str(HERE), call=call, n=n, scale=scale)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{call} n={n} scale={scale} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", default="2e6", help="comma-separated box counts (default 2e6)")
    parser.add_argument("--calls", default="search,check,kmean")
    parser.add_argument("--scale", type=float, default=0.5)
    args = parser.parse_args()
    print("| call | boxes | plain: peak growth | scale=%g: peak growth | ratio | seconds plain / scale |" % args.scale)
    print("|---|---|---|---|---|---|")
    for n in (int(float(v)) for v in args.boxes.split(",")):
        for call in args.calls.split(","):
            plain, scaled = measure(call, n, None), measure(call, n, args.scale)
            print(
                f"| {call} | {n:,} | {plain['mb']:.0f} MB | {scaled['mb']:.0f} MB | {scaled['mb'] / max(plain['mb'], 1):.2f} | "
                f"{plain['seconds']:.1f} / {scaled['seconds']:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
