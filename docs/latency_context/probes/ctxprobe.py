"""Probe: entries timed in context (a depthwise 1x1 conv producing each input), minus the context alone."""
import sys, json, warnings
import numpy as np, torch
from torch import nn
sys.path.insert(0, "/tmp/snap")
from core.experiment import Experiment
from detection.config import DetectorConfig
from latency.config import LatencyConfig
from latency.keys import build_entries, arch_entries, reorder_key, tap_sizes
from latency.parts import build_module, export_entry, reference_onnx, empty_onnx
from latency.export import onnx_bytes
from latency.timing import open_session
from latency.robust import InterleavedBuild
from dataclasses import replace

cfgp, src, out = sys.argv[1], sys.argv[2], sys.argv[3]
kind = sys.argv[4] if len(sys.argv) > 4 else "dw"
exp = Experiment.from_yaml(cfgp); space = exp.space; det = exp.section("detector", DetectorConfig)
lat = replace(exp.section("latency", LatencyConfig), warmup=10, repeats=50, threads=1)

class Ctx(nn.Module):
    def __init__(self, shapes, inner=None):
        super().__init__()
        if kind == "dw":
            self.pre = nn.ModuleList(nn.Conv2d(s[1], s[1], 1, groups=s[1], bias=False) for s in shapes)
        else:
            self.pre = nn.ModuleList(nn.Conv2d(s[1], s[1], 1, bias=False) for s in shapes)
        self.inner = inner
    def forward(self, *xs):
        ys = [p(x) for p, x in zip(self.pre, xs)]
        if self.inner is None:
            return tuple(ys) if len(ys) > 1 else ys[0]
        return self.inner(*ys)

entries = [e for e in build_entries(space, det)]
stem_key = entries[0].key
models, keys = [], []
ctx_shapes = {}
for e in entries:
    if e.kind == "reorder" or e.key == stem_key:
        models.append(export_entry(e, det)); keys.append(e.key); continue
    models.append(onnx_bytes(Ctx(e.inputs, build_module(e, det)).eval(), e.inputs, 17)); keys.append(e.key)
    ctx_shapes[e.inputs] = True
for shp in ctx_shapes:
    models.append(onnx_bytes(Ctx(shp).eval(), shp, 17)); keys.append("ctx:" + repr(shp))
build = InterleavedBuild(open_session(reference_onnx(), lat), open_session(empty_onnx(), lat),
                         lat.rounds, lat.warmup, lat.repeats, lat.quantile)
ms = {}
for s in range(0, len(models), 20):
    runners = []
    for m in models[s:s+20]:
        try: runners.append(open_session(m, lat))
        except Exception: runners.append(None)
    st = build.time_group(runners, seed=s)
    for k, x in zip(keys[s:s+20], st): ms[k] = x["median_ms"]
o = build.overhead_ms
def raw(arch):
    es = arch_entries(space, arch, det)
    tot = o
    for e in es:
        if e.key == stem_key:
            tot += ms[e.key] - o
        else:
            tot += ms[e.key] - ms["ctx:" + repr(e.inputs)]
    # taps feeding both the next block and a lateral: that tensor's reorder is subtracted twice
    return tot
d = json.load(open(f"{src}/decomp.json"))
archs = [space.parse(a) for a in d["archs"]]
tap_fix = []
for a in archs:
    # taps with 2 consumers: the lateral and the next stage's first block (not for the last stage)
    groups = space.split(a); stages = space.tap_stages(det.feature_strides)
    fix = 0.0
    for st, size in zip(stages, tap_sizes(space, det)):
        if st + 1 < len(space.stages):
            c = groups[st][-1].channels
            fix += 0.5 * max(ms.get(reorder_key(c, *size), o) - o, 0)
    tap_fix.append(fix)
rawv = [raw(a) for a in archs]
json.dump({"archs": d["archs"], "raw": rawv, "raw_tapfix": [r + f for r, f in zip(rawv, tap_fix)], "truths": d["truths"], "overhead": o, "noise": build.noise["reference_cv"]}, open(f"{out}/decomp.json", "w"))
print("done", o, build.noise["reference_cv"])
