"""Benchmark: raw sigma on the R^3 grid for one latent of the full-size FFHQ-512 EG3D (random weights).

Two methods, each in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its own:

- ``ours``: ``nerfsculpt.geometry.sigma.sigma_grid``: mapping and backbone once, tri-plane
  factorisation, chunked decoder.
- ``naive``: the reference's loop (reference_method.md §1.1, EG3D gen_samples.py, eg3d.md §3.15):
  all R^3 coordinates materialised, then ``G.sample(chunk, dirs, z, c)`` per chunk of points, which
  reruns mapping + backbone every time.

Both evaluate the exact grid; the parent checks that they agree, then prints the table and the
speed-up. Usage::

    python benchmarks/sigma_grid.py                       # 256^3, 1M-point chunks, all cores
    python benchmarks/sigma_grid.py --resolution 128 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

METHODS = ("ours", "naive")


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def run_method(method: str, resolution: int, chunk: int, out: Path) -> dict[str, float]:
    """Build G, extract sigma once with ``method``, save it to ``out``; return timings and memory."""
    from nerfsculpt.camera import canonical_camera
    from nerfsculpt.generator.config import ffhq512_config
    from nerfsculpt.generator.triplane import TriPlaneGenerator
    from nerfsculpt.geometry.grid import grid_coordinates
    from nerfsculpt.geometry.sigma import sigma_grid
    from nerfsculpt.latents import z_from_seed

    torch.manual_seed(0)
    G = TriPlaneGenerator(ffhq512_config()).eval().requires_grad_(False)
    z, c = z_from_seed(0), canonical_camera()  # (1, 512), (1, 25)
    rss_before = _peak_rss_gb()
    start = time.perf_counter()
    if method == "ours":
        with torch.inference_mode():
            ws = G.mapping(z, c, truncation_psi=1.0, truncation_cutoff=14)  # (1, 14, 512)
        sigma = sigma_grid(G, ws, resolution, chunk_points=chunk)[0]  # (R, R, R)
    else:
        with torch.no_grad():
            coordinates = grid_coordinates(resolution)[None]  # (1, R^3, 3): the whole grid, as the reference
            directions = torch.zeros(1, chunk, 3)
            directions[..., 2] = -1  # ignored by the decoder
            sigma = torch.empty(resolution**3)
            for head in range(0, resolution**3, chunk):
                part = coordinates[:, head : head + chunk]  # (1, n, 3)
                sigma[head : head + part.shape[1]] = G.sample(
                    part, directions[:, : part.shape[1]], z, c, truncation_psi=1.0, truncation_cutoff=14,
                    noise_mode="const",
                )["sigma"].reshape(-1)
        sigma = sigma.reshape(resolution, resolution, resolution)
    seconds = time.perf_counter() - start
    torch.save(sigma, out)
    return {"seconds": seconds, "points_per_second": resolution**3 / seconds,
            "peak_rss_gb": _peak_rss_gb(), "rss_before_gb": rss_before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--resolution", type=int, default=256, help="grid samples per axis")
    parser.add_argument("--chunk", type=int, default=1_000_000, help="points per decoder call (the reference's 1M)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.child:
        print(json.dumps(run_method(args.child, args.resolution, args.chunk, args.out)))
        return

    results, sigmas = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            out = Path(tmp) / f"{method}.pt"
            command = [sys.executable, __file__, "--child", method, "--resolution", str(args.resolution),
                       "--chunk", str(args.chunk), "--threads", str(args.threads), "--out", str(out)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            results[method] = json.loads(done.stdout.strip().splitlines()[-1])
            sigmas[method] = torch.load(out)
    difference = (sigmas["ours"] - sigmas["naive"]).abs().max().item()

    print(f"sigma grid {args.resolution}^3 = {args.resolution**3:,} points, FFHQ-512 EG3D (random weights), "
          f"CPU, {args.threads} threads, chunk {args.chunk:,}")
    print(f"{'method':<8}{'seconds':>10}{'points/s':>14}{'peak RSS GB':>14}{'RSS after build GB':>21}")
    for method, r in results.items():
        print(f"{method:<8}{r['seconds']:>10.1f}{r['points_per_second']:>14,.0f}{r['peak_rss_gb']:>14.2f}"
              f"{r['rss_before_gb']:>21.2f}")
    print(f"speed-up ours vs naive: {results['naive']['seconds'] / results['ours']['seconds']:.1f}x; "
          f"max |sigma_ours - sigma_naive| = {difference:.2e}")


if __name__ == "__main__":
    main()
