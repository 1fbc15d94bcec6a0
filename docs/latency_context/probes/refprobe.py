"""Probe: which reference tracks the drift of whole default models: the small cache-resident conv or a
memory-heavy one?"""
import sys, json
import numpy as np
from dataclasses import replace
sys.path.insert(0, "/work/main")
from onnx import TensorProto, helper, numpy_helper
from core.experiment import Experiment
from detection.config import DetectorConfig
from detection.model import build_detector
from latency.config import LatencyConfig
from latency.export import onnx_bytes
from latency.timing import open_session
from latency.parts import reference_onnx
from latency.robust import time_interleaved
from latency.calibrate import sample_pool

def big_ref(c=64, size=96, seed=0):
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.standard_normal((c, c, 1, 1)) * 0.1).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((c, 1, 3, 3)) * 0.1).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x0", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["y"], pads=[1, 1, 1, 1], group=c)]
    shape = [1, c, size, size]
    g = helper.make_graph(nodes, "bigref", [helper.make_tensor_value_info("x0", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], initializer=[w1, w2])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

cfg, out = sys.argv[1], sys.argv[2]
exp = Experiment.from_yaml(cfg); det = exp.section("detector", DetectorConfig)
lat = replace(exp.section("latency", LatencyConfig), threads=1)
archs = list(dict.fromkeys(sample_pool(exp.space, 400, np.random.default_rng(123))))[:30]
models = [onnx_bytes(build_detector(exp.space, a, det), ((1, 3, *det.input_size),), 17) for a in archs]
runners = [open_session(m, lat) for m in models] + [open_session(reference_onnx(), lat), open_session(big_ref(), lat)]
stats, _ = time_interleaved(runners, rounds=20, warmup=20, repeats=100, quantile=0.2, reference=None)
q = np.array([s["rounds_ms"] for s in stats])  # (n, rounds)
rel = q / np.median(q, axis=1, keepdims=True)
S = np.median(rel[:-2], axis=0)
print("models' per-round slowdown:", np.round(S, 3))
print("small ref:", np.round(rel[-2], 3))
print("big ref:  ", np.round(rel[-1], 3))
print("corr small", np.corrcoef(S, rel[-2])[0, 1], "corr big", np.corrcoef(S, rel[-1])[0, 1])
print("big ref ms", stats[-1]["median_ms"], "small", stats[-2]["median_ms"])
json.dump({"q": q.tolist()}, open(out, "w"))
