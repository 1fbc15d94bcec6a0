"""Probe: end-to-end timing reproducibility (the truth) with and without pinning."""
import sys, json
import numpy as np
from dataclasses import replace
sys.path.insert(0, "/work/main")
from core.experiment import Experiment
from detection.config import DetectorConfig
from detection.model import build_detector
from latency.config import LatencyConfig
from latency.export import onnx_bytes
from latency.timing import time_models
from latency.calibrate import sample_pool
from latency.table import fit_affine
from latency.validate import metrics
cfg, out, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
exp = Experiment.from_yaml(cfg); det = exp.section("detector", DetectorConfig)
lat = replace(exp.section("latency", LatencyConfig), warmup=10, repeats=50, threads=1)
archs = list(dict.fromkeys(sample_pool(exp.space, 400, np.random.default_rng(123))))[:50]
models = [onnx_bytes(build_detector(exp.space, a, det), ((1, 3, *det.input_size),), 17) for a in archs]
VARS = {"r5": dict(rounds=5), "r10x100": dict(rounds=10, repeats=100)}
res = {k: [] for k in VARS}
for r in range(reps):
    for k, v in VARS.items():
        t = time_models(models, replace(lat, seed=r, **v), progress=False)
        res[k].append([x["median_ms"] for x in t])
        print(r, k, flush=True)
json.dump(res, open(out, "w"))
def cmp(a, b):
    a, b = np.array(a), np.array(b); e = np.abs(a / b - 1) * 100
    ac, bc = fit_affine(a[:20], b[:20]); m = metrics(ac * a[20:] + bc, b[20:])
    return "raw %.2f max %.1f w5 %.0f | cal %.2f max %.1f" % (e.mean(), e.max(), (e <= 5).mean() * 100, m["mape_pct"], m["max_error_pct"])
for k, v in res.items():
    for i in range(len(v)):
        for j in range(i + 1, len(v)):
            print(k, i, j, cmp(v[i], v[j]))
