import json, sys, numpy as np
sys.path.insert(0, "/tmp/snap")
from latency.table import fit_affine
from latency.validate import metrics
def score(raw, truth, ncal=20):
    raw, truth = np.array(raw), np.array(truth)
    a, b = fit_affine(raw[:ncal], truth[:ncal])
    m = metrics(a * raw[ncal:] + b, truth[ncal:])
    rawm = np.mean(np.abs(raw - truth) / truth) * 100
    return m["mape_pct"], m["within_5_pct"], m["max_error_pct"], rawm, a, b
truth_runs = ["d_base_1", "d_nodrift_2", "d_base_3", "d_nodrift_4"]
truths = [json.load(open(f"{t}/decomp.json"))["truths"][0] for t in truth_runs]
for d in sys.argv[1:]:
    r = json.load(open(f"{d}/decomp.json"))
    for key in ("raw", "raw_tapfix"):
        if key not in r: continue
        s = [score(r[key], t) for t in truths]
        print(f"{d:>14} {key:>10}", " | ".join("%.2f %3.0f %4.1f raw%.1f a%.3f b%.4f" % x for x in s))
