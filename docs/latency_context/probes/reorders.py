import sys, collections, tempfile, os, warnings
sys.path.insert(0, "/tmp/snap")
import onnxruntime as ort, onnx
ort.set_default_logger_severity(3)
from core.experiment import Experiment
from detection.config import DetectorConfig
from latency.keys import build_entries
from latency.parts import export_entry
cfg = sys.argv[1]
exp = Experiment.from_yaml(cfg)
space = exp.space; det = exp.section("detector", DetectorConfig)
def optimized(model_bytes):
    so = ort.SessionOptions(); so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    f = tempfile.mktemp(suffix=".onnx"); so.optimized_model_filepath = f
    ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    m = onnx.load(f); os.remove(f); return m
cnt = collections.Counter()
for e in build_entries(space, det):
    if e.kind not in ("block",): continue
    m = optimized(export_entry(e, det))
    gin = {i.name for i in m.graph.input}; gout = {o.name for o in m.graph.output}
    rin = any(n.op_type == "ReorderInput" and n.input[0] in gin for n in m.graph.node)
    rout = any(n.op_type == "ReorderOutput" and n.output[0] in gout for n in m.graph.node)
    b = e.boundaries()
    rule_in = e.c_in % 4 == 0; rule_out = e.c_out % 4 == 0
    cnt[(e.op, e.c_in, e.c_out, rin, rule_in, rout, rule_out)] += 1
for k, v in sorted(cnt.items()):
    flag = "" if (k[3] == k[4] and k[5] == k[6]) else "  <-- rule differs"
    print(k, v, flag)
