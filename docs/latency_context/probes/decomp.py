"""Probe: where does the tiny table's validation error come from? Builds tables with variants,
times a fixed set of 50 archs end to end twice per variant, scores table x truth."""
import sys, json, warnings, functools
import numpy as np
sys.path.insert(0, "/tmp/snap")
import latency.robust as robust, latency.timing as timing
from latency import measure
from latency.table import LatencyTable, experiment_of, fit_affine
from latency.calibrate import measure_archs, spread_archs, sample_pool
from latency.config import LatencyConfig
from detection.config import DetectorConfig
from latency.validate import metrics
from dataclasses import replace

variant = sys.argv[1]; out = sys.argv[2]; cfg = sys.argv[3] if len(sys.argv) > 3 else "/tmp/snap/experiments/tiny.yaml"
extra = sys.argv[4:]
orig = robust.time_interleaved
if variant == "nodrift":
    f = functools.partial(orig, deadband=1e9)
    robust.time_interleaved = f; timing.time_interleaved = f
COMMON = ["latency.warmup=10", "latency.repeats=50", "latency.pool_size=2000", "latency.threads=1"] + extra
table_path = f"{out}/table.csv"
measure.main(["--config", cfg, "--out", table_path, *sum([["--set", s] for s in COMMON], []), "--force", "--no-progress"])
exp = experiment_of(table_path, None, [])
lat = exp.section("latency", LatencyConfig); det = exp.section("detector", DetectorConfig)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    table = LatencyTable.load(table_path, exp.space, det)
# fixed arch set: from a fixed pool scored by MACs-independent rng -> use sample_pool deterministically
rng = np.random.default_rng(123)
pool = list(dict.fromkeys(sample_pool(exp.space, 400, rng)))
archs = pool[:50]
raw = table.raw_many(archs)
truths = []
for rep in range(2):
    t = measure_archs(exp.space, archs, det, lat, desc=f"e2e{rep}")
    truths.append([x["median_ms"] for x in t])
json.dump({"archs": [str(a) for a in archs], "raw": raw.tolist(), "truths": truths}, open(f"{out}/decomp.json", "w"))
