import json, sys, glob, numpy as np
sys.path.insert(0, "/tmp/snap")
from latency.table import fit_affine
from latency.validate import metrics
runs = {d: json.load(open(f"{d}/decomp.json")) for d in sys.argv[1:]}
def score(raw, truth, ncal=20):
    raw, truth = np.array(raw), np.array(truth)
    a, b = fit_affine(raw[:ncal], truth[:ncal])
    m = metrics(a * raw[ncal:] + b, truth[ncal:])
    return m["mape_pct"], m["within_5_pct"], m["max_error_pct"]
names = list(runs)
print("truth noise floor (rep0 vs rep1 same process, calibrated):")
for d in names:
    r = runs[d]; print(" ", d, "%.2f %.0f %.1f" % score(r["truths"][0], r["truths"][1]))
print("table d (row) vs truth e rep0 (col):")
print(" " * 14 + " ".join(f"{e:>16}" for e in names))
for d in names:
    print(f"{d:>14}", " ".join("%6.2f %3.0f %4.1f" % score(runs[d]["raw"], runs[e]["truths"][0]) for e in names))
print("truth d vs truth e (rep0):")
for d in names:
    print(f"{d:>14}", " ".join("%6.2f %3.0f %4.1f" % score(runs[d]["truths"][0], runs[e]["truths"][0]) for e in names))
print("table vs table:")
for d in names:
    print(f"{d:>14}", " ".join("%6.2f %3.0f %4.1f" % score(runs[d]["raw"], runs[e]["raw"]) for e in names))
