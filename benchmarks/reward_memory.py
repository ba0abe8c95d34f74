"""Benchmark: peak memory and step time of the full-size sigma reward, plain autograd vs checkpointing.

One training step (forward + backward of one ranked list's worth of slabs, batch 1 as the paper) of
the 12,686,699-parameter network on

- the reward slab [1, 1, 129, 141, 128] (the paper's input), and
- the uncropped 256^3 cube [1, 1, 256, 256, 256] (which the paper could not fit in 24 GB),

each with plain autograd and with activation checkpointing (``SigmaRewardNet.checkpointing``).
Every configuration runs in a fresh subprocess. On CUDA the peak is ``torch.cuda.max_memory_allocated``.
On CPU it is the process's peak resident set size (``ru_maxrss``) with glibc told to serve every
allocation above 64 KiB by mmap (``MALLOC_MMAP_THRESHOLD_``), so that freed tensors leave the
process at once and the peak follows live memory instead of allocator fragmentation (without it
the same run varies by +-100 MiB). The RSS includes PyTorch and the network (an idle process with
the network built is measured too), so the table gives the total and the part above idle: the
memory the training step itself needs. Target: checkpointing lowers the peak by >= 2x. Usage::

    python benchmarks/reward_memory.py                      # CPU, both inputs
    python benchmarks/reward_memory.py --device cuda --precision bf16
    python benchmarks/reward_memory.py --inputs slab        # the slab only (the cube takes minutes on CPU)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _measure import peak_mib, timed_steps

INPUTS = {"slab": (129, 141, 128), "cube": (256, 256, 256)}


def _child(shape: tuple[int, int, int], checkpointing: bool, device: str, precision: str, steps: int) -> dict:
    import torch

    from nerfsculpt.reward.sigma_net import SigmaRewardNet

    torch.manual_seed(0)
    net = SigmaRewardNet().to(device)
    net.checkpointing = checkpointing
    x = torch.rand(1, 1, *shape, device=device) * 100
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            reward = net(x)
        reward.sum().backward()
        net.zero_grad(set_to_none=True)

    step_s = timed_steps(step, device, steps)
    peak = peak_mib(device)
    return {"peak_mib": peak, "step_s": step_s}


def _idle() -> dict:
    import resource

    import torch

    from nerfsculpt.reward.sigma_net import SigmaRewardNet

    SigmaRewardNet()
    torch.zeros(1)
    return {"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", default="slab,cube", help="comma list of: slab, cube")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--steps", type=int, default=2, help="steps per configuration (the fastest is reported)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        spec = json.loads(args.child)
        result = _idle() if spec["input"] == "idle" else _child(tuple(INPUTS[spec["input"]]), spec["checkpointing"],
                                                                 args.device, args.precision, args.steps)
        print(json.dumps(result))
        return

    def run(name: str, checkpointing: bool = False) -> dict:
        spec = json.dumps({"input": name, "checkpointing": checkpointing})
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        out = subprocess.run([sys.executable, __file__, "--child", spec, "--device", args.device, "--precision",
                              args.precision, "--steps", str(args.steps)], capture_output=True, text=True, check=True,
                             env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])

    print(f"sigma reward (12,686,699 parameters), forward + backward, batch 1, {args.device}, {args.precision}")
    idle = 0.0
    if not args.device.startswith("cuda"):
        idle = run("idle")["peak_mib"]
        print(f"idle process with the network built: {idle:.0f} MiB peak RSS")
    print(f"{'input':<20}{'plain MiB':>11}{'ckpt MiB':>10}{'ratio':>7}{'above idle':>16}{'ratio':>7}"
          f"{'plain s':>9}{'ckpt s':>8}")
    for name in args.inputs.split(","):
        plain, ckpt = run(name), run(name, checkpointing=True)
        ratio = plain["peak_mib"] / ckpt["peak_mib"]
        step_ratio = (plain["peak_mib"] - idle) / (ckpt["peak_mib"] - idle)
        shape = "x".join(map(str, INPUTS[name]))
        print(f"{name + ' ' + shape:<20}{plain['peak_mib']:>11.0f}{ckpt['peak_mib']:>10.0f}{ratio:>7.2f}"
              f"{plain['peak_mib'] - idle:>8.0f} /{ckpt['peak_mib'] - idle:>6.0f}{step_ratio:>7.2f}"
              f"{plain['step_s']:>9.2f}{ckpt['step_s']:>8.2f}")


if __name__ == "__main__":
    main()
