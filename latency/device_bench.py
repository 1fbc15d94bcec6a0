"""Time ONNX models with onnxruntime: the one timing implementation, and the device bundle's script.

Needs only Python 3.9+, numpy and onnxruntime (no torch, no facenas), so `latency.bundle` copies this
file as-is into a folder with the ONNX files and a manifest. On the target device::

    python device_bench.py --threads 2            # reads manifest.json beside this file
    # -> results_t2.json; bring it back and run
    facenas latency measure --import results_t2.json --out table.csv

`latency.measure` imports `make_session` / `time_session` from here, so the local table and a device
table are timed the same way: inputs and outputs are pre-allocated OrtValues bound once with
IOBinding (no allocation inside the timed call), warm-up runs first, then `repeats` timed runs of
which the median and 90th percentile are kept; cv = std / mean over the repeats.
Re-running with the same --out resumes (finished entries are kept; the file is rewritten atomically
every --flush-every entries).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

try:  # inside facenas
    from latency.robust import InterleavedBuild, Runner
except ImportError:  # in a device bundle, where latency.bundle copies robust.py beside this file
    from robust import InterleavedBuild, Runner

RESULTS_FORMAT = "facenas-latency-results/1"
# "wall": elapsed time (what a user waits). "cpu": CPU time of this process, which ignores time
# spent preempted by other processes: use it with threads=1 on a shared, busy machine.
CLOCKS = {"wall": time.perf_counter_ns, "cpu": time.process_time_ns}


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else whatever `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_info(threads: int, provider: str = "CPUExecutionProvider") -> dict:
    """What a latency figure depends on besides the model: recorded beside every table."""
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "provider": provider,
        "threads": threads,
    }


def make_session(model: str | bytes | Path, threads: int,
                 provider: str = "CPUExecutionProvider") -> ort.InferenceSession:
    """Session with all graph optimizations (Conv+BN fusion etc.) and an explicit thread count."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if isinstance(model, Path):
        model = str(model)
    return ort.InferenceSession(model, sess_options=opts, providers=[provider])


def summarize(times_ms: np.ndarray) -> dict:
    """median, p90, mean and cv (std / mean) of per-call times in milliseconds."""
    t = np.asarray(times_ms, dtype=np.float64)
    mean = float(t.mean())
    return {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
            "mean_ms": mean, "cv": float(t.std() / mean) if mean > 0 else 0.0}


def bind_session(sess: ort.InferenceSession, seed: int = 0) -> Callable[[], None]:
    """A no-argument call running `sess` once on fixed random inputs with IOBinding (inputs and
    outputs pre-allocated, so nothing is allocated inside the timed call)."""
    rng = np.random.default_rng(seed)
    feeds = {i.name: rng.standard_normal([int(d) for d in i.shape]).astype(np.float32)
             for i in sess.get_inputs()}
    names = [o.name for o in sess.get_outputs()]
    first = sess.run(names, feeds)  # output shapes and dtypes, whatever the graph declares
    binding = sess.io_binding()
    keep = []  # the OrtValues must outlive the binding
    for name, arr in feeds.items():
        value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(arr), "cpu", 0)
        binding.bind_ortvalue_input(name, value)
        keep.append(value)
    for name, arr in zip(names, first):
        value = ort.OrtValue.ortvalue_from_shape_and_type(list(arr.shape), arr.dtype, "cpu", 0)
        binding.bind_ortvalue_output(name, value)
        keep.append(value)

    def run() -> None:
        sess.run_with_iobinding(binding)

    run.keep = keep  # type: ignore[attr-defined]
    return run


def time_session(sess: ort.InferenceSession, warmup: int, repeats: int, passes: int = 1,
                 seed: int = 0, clock: str = "wall") -> dict:
    """Time `sess` on random inputs with IOBinding; returns `summarize` of all runs plus pass_cv.

    With passes > 1 the repeats are done `passes` times (each after its own warm-up) and pass_cv is
    the std / mean of the per-pass medians (run-to-run variation); NaN for a single pass.
    `clock` is a key of CLOCKS.
    """
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r} (expected one of {sorted(CLOCKS)})")
    run, clock = bind_session(sess, seed), CLOCKS[clock]
    medians, all_times = [], []
    for _ in range(passes):
        for _ in range(warmup):
            run()
        times = np.empty(repeats, dtype=np.int64)
        for i in range(repeats):
            t0 = clock()
            run()
            times[i] = clock() - t0
        times_ms = times / 1e6
        medians.append(float(np.median(times_ms)))
        all_times.append(times_ms)
    out = summarize(np.concatenate(all_times))
    m = np.asarray(medians)
    out["pass_cv"] = float(m.std() / m.mean()) if passes > 1 else float("nan")
    out["n"] = repeats * passes
    return out


def measure_model(model: str | bytes | Path, threads: int, warmup: int, repeats: int,
                  passes: int = 1, provider: str = "CPUExecutionProvider",
                  clock: str = "wall") -> dict:
    """`time_session` of a fresh session on `model` (an .onnx path or serialized bytes)."""
    return time_session(make_session(model, threads, provider), warmup, repeats, passes,
                        clock=clock)


def measure_optional(kind: str, model: str | bytes | Path, threads: int, warmup: int, repeats: int,
                     passes: int = 1, provider: str = "CPUExecutionProvider",
                     clock: str = "wall") -> dict:
    """`measure_model`; for kind "reorder" a model the build cannot run (no NCHWc layout ops,
    e.g. ARM) times as 0: that build has no layout reorders to correct for."""
    try:
        return measure_model(model, threads, warmup, repeats, passes, provider, clock)
    except Exception:  # onnxruntime raises its own Fail/NotImplemented types
        if kind != "reorder":
            raise
        return {"median_ms": 0.0, "p90_ms": 0.0, "mean_ms": 0.0, "cv": 0.0,
                "pass_cv": float("nan"), "n": 0}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: dict) -> None:
    """Atomic write (temp file + os.replace): a kill leaves the old file or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)  # mkstemp makes 0600: give the results the mode any user file gets
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_bundle(manifest_path: Path, out: Path, threads: int, warmup: int | None = None,
               repeats: int | None = None, passes: int | None = None, flush_every: int = 20,
               provider: str = "CPUExecutionProvider", clock: str | None = None,
               verbose: bool = True) -> dict:
    """Time every entry of a bundle manifest; resumes from `out` when it has the same settings."""
    manifest = json.loads(manifest_path.read_text())
    settings = dict(manifest.get("settings", {}))
    for name, value in (("warmup", warmup), ("repeats", repeats), ("passes", passes),
                        ("clock", clock)):
        if value is not None:
            settings[name] = value
    settings["threads"] = threads
    results = {"format": RESULTS_FORMAT, "device": device_info(threads, provider),
               "table": manifest["table"], "settings": settings, "entries": []}
    if out.exists():
        old = json.loads(out.read_text())
        if old.get("settings") != settings or old.get("table") != manifest["table"]:
            raise SystemExit(f"{out} holds results for other settings or another bundle; "
                             "pass another --out or delete it")
        results["entries"] = old["entries"]
    done = {e["key"] for e in results["entries"]}
    todo = [e for e in manifest["entries"] if e["key"] not in done]
    if settings.get("method", "sequential") == "interleaved":
        for k in ("noise", "overhead_ms"):  # the build's reference rounds so far (a resume)
            if out.exists() and k in old:
                results[k] = old[k]
        _run_interleaved(manifest_path.parent, todo, results, threads, provider, flush_every, out,
                         len(manifest["entries"]), verbose)
        return results
    start, since_flush = time.perf_counter(), 0
    for i, entry in enumerate(todo, 1):
        timing = measure_optional(entry["kind"], manifest_path.parent / entry["file"], threads,
                                  settings["warmup"], settings["repeats"], settings.get("passes", 1),
                                  provider, settings.get("clock", "wall"))
        row = {k: v for k, v in entry.items() if k not in ("file", "inputs")}
        row.update({k: timing[k] for k in ("median_ms", "p90_ms", "cv", "pass_cv")})
        row["measured_at"] = _now()
        results["entries"].append(row)
        since_flush += 1
        if since_flush >= flush_every or i == len(todo):
            _write_json(out, results)
            since_flush = 0
        if verbose and (i % 25 == 0 or i == len(todo)):
            print(f"{len(done) + i}/{len(manifest['entries'])} entries, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    if not todo:
        _write_json(out, results)
    return results


def _run_interleaved(bundle: Path, todo: list[dict], results: dict, threads: int, provider: str,
                     flush_every: int, out: Path, total: int, verbose: bool) -> None:
    """`latency.robust.time_interleaved` over groups of `flush_every` entries, exactly as
    `latency.measure` builds a local table: rounds in a fresh order, the settings' quantile,
    preempted time removed (one thread, wall clock), drift corrected against the bundle's
    reference workload, onnxruntime's per-call overhead timed on its empty model. Each group is
    flushed to `out`; `results` gets ``noise`` (the build's noise estimate) and ``overhead_ms``."""
    settings = results["settings"]
    mode = "cpu" if settings.get("clock") == "cpu" else ("oncpu" if threads == 1 else "wall")

    def runner(name: str) -> Runner:
        return Runner(bind_session(make_session(bundle / name, threads, provider)), mode)

    if not todo:
        _write_json(out, results)
        return
    build = InterleavedBuild(runner("reference.onnx"), runner("empty.onnx"), settings.get("rounds", 5),
                             settings["warmup"], settings["repeats"], settings.get("quantile", 0.2),
                             results.get("noise"), pin=settings.get("pin", False))
    start = time.perf_counter()
    for first in range(0, len(todo), flush_every):
        group = todo[first:first + flush_every]
        runners: list[Runner | None] = []
        for entry in group:
            try:
                runners.append(runner(entry["file"]))
            except Exception:  # a layout reorder this build cannot run times as 0 (measure_optional)
                if entry["kind"] != "reorder":
                    raise
                runners.append(None)
        for entry, st in zip(group, build.time_group(runners, seed=len(results["entries"]))):
            row = {k: v for k, v in entry.items() if k not in ("file", "inputs")}
            row.update({k: st[k] for k in ("median_ms", "p90_ms", "cv", "pass_cv")})
            row["measured_at"] = _now()
            results["entries"].append(row)
        results["noise"], results["overhead_ms"] = build.noise, build.overhead_ms
        _write_json(out, results)
        if verbose:
            print(f"{len(results['entries'])}/{total} entries, {time.perf_counter() - start:.0f} s, "
                  f"reference CV {build.noise.get('reference_cv', float('nan')) * 100:.2f}%",
                  flush=True)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, required=True, help="onnxruntime intra-op threads")
    p.add_argument("--manifest", type=Path, default=Path(__file__).resolve().parent / "manifest.json")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default results_t<N>.json)")
    p.add_argument("--warmup", type=int, default=None, help="override the manifest's warm-up runs")
    p.add_argument("--repeats", type=int, default=None, help="override the manifest's timed runs")
    p.add_argument("--passes", type=int, default=None, help="timing passes per entry (run-to-run cv)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default=None,
                   help="wall (default) or cpu (process CPU time: robust on a busy machine, "
                        "threads 1 only)")
    p.add_argument("--flush-every", type=int, default=20)
    p.add_argument("--provider", default="CPUExecutionProvider")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    out = args.out or args.manifest.parent / f"results_t{args.threads}.json"
    results = run_bundle(args.manifest, out, args.threads, args.warmup, args.repeats, args.passes,
                         args.flush_every, args.provider, args.clock)
    med = np.array([e["median_ms"] for e in results["entries"]])
    cv = np.array([e["cv"] for e in results["entries"]])
    print(json.dumps(results["device"]))
    print(f"wrote {out}: {len(med)} entries, sum of medians {med.sum():.2f} ms, "
          f"median cv {np.median(cv):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
