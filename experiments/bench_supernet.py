"""Step time of the supernet on a fixed path vs the extracted standalone network of the same arch.

One step = forward + backward + SGD step, same batch for both. The two are timed alternately (so
load from other processes hits both alike) and the median of `--steps` is reported as JSON:

    python experiments/bench_supernet.py                          # default space, 8 x 3 x 192 x 192
    python experiments/bench_supernet.py --config experiments/tiny.yaml --size 64
    {"supernet_ms": ..., "standalone_ms": ..., "ratio": ..., ...}

The weight-sharing overhead (sliced/cropped weight views, their autograd nodes, a longer parameter
list for the optimizer) should keep ``ratio`` <= 1.10 at detector sizes: measured 1.00-1.07 on a
2-core CPU (baseline and largest archs, 8 x 192 x 192). At toy sizes (the tiny config, ~5 ms steps)
the fixed per-op cost of those views is a visible share and the ratio is ~1.10-1.15. On a busy
machine use ``--threads 1``: with 2 threads contending for cores the run-to-run noise exceeds 30%.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from core.device import flush_denormals, select_device
from core.experiment import Experiment
from supernet.net import Supernet


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="experiments/default.yaml")
    p.add_argument("--arch", default="baseline", help="arch string, or baseline/smallest/largest")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=192, help="input height = width")
    p.add_argument("--steps", type=int, default=10, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
          device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = sum(f.square().mean() for f in model(x))
    loss.backward()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    flush_denormals()
    device = select_device(args.device)
    space = Experiment.from_yaml(args.config).space
    named = {"baseline": space.baseline, "smallest": space.smallest(), "largest": space.largest()}
    arch = named[args.arch] if args.arch in named else space.parse(args.arch)

    supernet = Supernet(space).to(device).train()
    supernet.set_active(arch)
    standalone = supernet.extract(arch).train()
    models = {"supernet": supernet, "standalone": standalone}
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for k, m in models.items()}
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    times: dict[str, list[float]] = {k: [] for k in models}
    for i in range(args.warmup + args.steps):
        order = list(models) if i % 2 else list(models)[::-1]
        for k in order:  # alternate (and swap the order), so background load hits both alike
            t = _step(models[k], opts[k], x, device)
            if i >= args.warmup:
                times[k].append(t)
    result = {"supernet_ms": round(statistics.median(times["supernet"]), 2),
              "standalone_ms": round(statistics.median(times["standalone"]), 2)}
    result["ratio"] = round(result["supernet_ms"] / result["standalone_ms"], 3)
    result.update(config=args.config, arch=str(arch), batch=args.batch, size=args.size,
                  steps=args.steps, warmup=args.warmup, device=str(device),
                  threads=torch.get_num_threads())
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
