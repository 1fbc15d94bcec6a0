"""Every reader, fed damaged input through its command: one line `error: ...` naming the file (and
line or key) and the bad value; never a traceback, never exit 0 with nonsense.

One table row per (reader, case): a function that damages a copy of a good input and returns the
argv of the command that reads it, plus the fragments the message must contain. Cases per reader:
malformed, truncated, empty, wrong type, out of range, non-finite, wrong encoding (where the reader
has such inputs). The commands run in-process (`main(argv)`); all of them stop before training.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.io
import torch
import yaml

from detection.data import DataConfig, resolve_root
from detection.prediction_files import write_predictions
from core.experiment import Experiment
from test_bad_input import _cache_env, _error, _evolve, _fake_table, _train, cache  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "tiny.yaml"
UTF16 = "utf-16"  # a wrong encoding: the text of a good file, as Windows Notepad may save it
TINY_LINES = TINY.read_text().splitlines()
BASELINE = str(Experiment.from_yaml(TINY).space.baseline)


def _retrain(argv):
    from retrain import main
    return main(argv)


def _evaluate(argv):
    from detection.wider_eval import main
    return main(argv)


def _predict(argv):
    from stages.predict import main
    return main(argv)


def _report(argv):
    from report import main
    return main(argv)


@pytest.fixture(scope="module")
def good(tmp_path_factory, cache) -> dict:
    """Good inputs to damage: the tiny dataset, a prediction folder, a latency table, a pareto.csv."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACENAS_CACHE", str(cache))
        exp = Experiment.from_yaml(TINY)
        wider = resolve_root(exp.section("data", DataConfig))
    tmp = tmp_path_factory.mktemp("good")
    ann = wider / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    names = [line for line in ann.read_text().splitlines() if line.endswith(".jpg")]
    for i, name in enumerate(names):
        write_predictions(tmp / "pred", name, np.array([[10, 10, 20, 20, 0.5 + i / 100]]))
    table = _fake_table(tmp / "table" / "latency.csv", [])
    (tmp / "pareto.csv").write_text(f"arch,latency_ms,ap_mean\n{BASELINE},0.9,0.5\n")
    return {"wider": wider, "pred": tmp / "pred", "table": table, "pareto": tmp / "pareto.csv"}


@dataclass
class Case:
    reader: str
    name: str
    make: Callable[[dict, Path], tuple[Callable, list, list[str]]]  # -> main, argv, fragments


def _copy(src: Path, dst: Path) -> Path:
    (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    return dst


def _edit_lines(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")


# -- annotation text (read by every command that loads data; here through evaluate --annotations) --
def _annotations(change):
    def make(good, tmp):
        ann = _copy(good["wider"] / "wider_face_split" / "wider_face_val_bbx_gt.txt", tmp / "gt.txt")
        fragments = change(ann)
        (tmp / "pred").mkdir()
        return _evaluate, ["--annotations", ann, "--pred", tmp / "pred"], [str(ann), *fragments]
    return make


def _set_line(index: int, text: str):
    def change(ann):
        _edit_lines(ann, lambda lines: lines.__setitem__(index, text))
        return [f":{index + 1}:", repr(text)]
    return change


def _truncate_annotations(ann):
    lines = ann.read_text().splitlines()
    count = int(lines[1])
    ann.write_text("\n".join(lines[:2 + count - 1]) + "\n")  # the first image loses its last face
    return [f":{count + 2}:", "file ends inside the faces"]


def _encode(path: Path, encoding: str) -> None:
    path.write_bytes(path.read_text().encode(encoding))


ANNOTATIONS = [
    Case("annotations", "malformed face row", _annotations(_set_line(2, "44 16 10 0 0 0"))),
    Case("annotations", "truncated", _annotations(_truncate_annotations)),
    Case("annotations", "empty", _annotations(lambda a: [a.write_text(""), "empty"][1:])),
    Case("annotations", "wrong type count", _annotations(_set_line(1, "two"))),
    Case("annotations", "negative count", _annotations(_set_line(1, "-3"))),
    Case("annotations", "non-finite box", _annotations(_set_line(2, "nan 16 10 10 0 0 0 0 0 0"))),
    Case("annotations", "infinite box", _annotations(_set_line(2, "inf 16 10 10 0 0 0 0 0 0"))),
    Case("annotations", "path climbs out", _annotations(_set_line(0, "../../../etc/x.jpg"))),
    Case("annotations", "absolute path", _annotations(_set_line(0, "/etc/faces/x.jpg"))),
    Case("annotations", "wrong encoding", _annotations(lambda a: _encode(a, UTF16) or
                                                       [":1:", "not UTF-8"])),
]


# -- images (train_supernet.py on a copy of the dataset whose train images are all damaged) -------
def _images(damage):
    def make(good, tmp):
        wider = _copy(good["wider"], tmp / "wider")
        for path in (wider / "WIDER_train" / "images").rglob("*.jpg"):
            damage(path)
        return _train, ["--config", TINY, "--data", wider, "--out", tmp / "run", "--no-progress"], [
            str(wider / "WIDER_train" / "images"), "none of the", "can be read"]
    return make


IMAGES = [
    Case("images", "all truncated", _images(lambda p: p.write_bytes(p.read_bytes()[:200]))),
    Case("images", "all empty", _images(lambda p: p.write_bytes(b""))),
    Case("images", "all not images", _images(lambda p: p.write_text("<html>not a jpeg</html>"))),
]


# -- .mat ground truth (evaluate --gt) ------------------------------------------------------------
def _mat(file: str, damage):
    def make(good, tmp):
        gt = _copy(good["wider"] / "ground_truth", tmp / "gt")
        damage(gt / file)
        return _evaluate, ["--gt", gt, "--pred", good["pred"]], [str(gt / file)]
    return make


MATS = [
    Case(".mat", "truncated", _mat("wider_face_val.mat",
                                   lambda p: p.write_bytes(p.read_bytes()[:300]))),
    Case(".mat", "empty", _mat("wider_hard_val.mat", lambda p: p.write_bytes(b""))),
    Case(".mat", "malformed", _mat("wider_easy_val.mat", lambda p: p.write_bytes(b"MATLAB" * 40))),
    Case(".mat", "wrong type", _mat("wider_face_val.mat", lambda p: scipy.io.savemat(
        p, {"event_list": np.arange(3.0), "file_list": 1.0, "face_bbx_list": 2.0}))),
    Case(".mat", "missing variable", _mat("wider_medium_val.mat",
                                          lambda p: scipy.io.savemat(p, {"other": 1.0}))),
]


# -- prediction files (evaluate --pred) -----------------------------------------------------------
def _prediction(change):
    def make(good, tmp):
        pred = _copy(good["pred"], tmp / "pred")
        path = sorted(pred.glob("*/*.txt"))[0]
        fragments = change(path)
        gt = good["wider"] / "ground_truth"
        return _evaluate, ["--gt", gt, "--pred", pred], [str(path), *fragments]
    return make


def _pred_line(index: int, text: str):
    def change(path):
        _edit_lines(path, lambda lines: lines.__setitem__(index, text))
        return [f":{index + 1}:", text]
    return change


def _first_line_only(path):
    path.write_text(path.read_text().splitlines()[0])
    return [":2:", "file ends before the detection count"]


PREDICTIONS = [
    Case("predictions", "malformed row", _prediction(_pred_line(2, "10 10 20 0.5"))),
    Case("predictions", "truncated", _prediction(_first_line_only)),
    Case("predictions", "empty", _prediction(lambda p: p.write_text("") or [":1:"])),
    Case("predictions", "wrong type count", _prediction(_pred_line(1, "one"))),
    Case("predictions", "negative count", _prediction(_pred_line(1, "-1"))),
    Case("predictions", "non-finite score", _prediction(_pred_line(2, "10 10 20 20 nan"))),
    Case("predictions", "wrong encoding", _prediction(lambda p: _encode(p, UTF16) or ["not UTF-8"])),
]


# -- experiment YAML (train_supernet.py --config) -------------------------------------------------
def _yaml(text_of: Callable[[str], str | bytes], *fragments: str, names_file: bool = True):
    def make(good, tmp):
        path = tmp / "bad.yaml"
        text = text_of(TINY.read_text())
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return _train, ["--config", path, "--out", tmp / "run", "--no-progress"], [
            *([str(path)] if names_file else []), *fragments]
    return make


def _search_yaml(good, tmp):
    path = tmp / "search" / "search.yaml"
    path.parent.mkdir()
    path.write_text("search:\n  ap_metric: mean\n  ap_metric: hard\n")
    return _report, [path.parent], [f"{path}:3:", "duplicate key 'ap_metric'"]


def _sub(old: str, new: str):
    return lambda text: text.replace(old, new, 1)


YAMLS = [
    Case("yaml", "duplicate section", _yaml(
        lambda t: t + "train:\n  lr: 0.5\n", f":{len(TINY_LINES) + 1}:", "duplicate key 'train'",
        f"first on line {TINY_LINES.index('train:') + 1}")),
    Case("yaml", "duplicate key", _yaml(_sub("  epochs: 2\n", "  epochs: 2\n  epochs: 3\n"),
                                        f":{TINY_LINES.index('  epochs: 2') + 2}:",
                                        "duplicate key 'epochs'")),
    Case("yaml", "malformed", _yaml(_sub("  epochs: 2\n", "  epochs: [2\n"), "not valid YAML")),
    Case("yaml", "truncated", _yaml(lambda t: t[:t.index("  ops:") + 12], "not valid YAML")),
    Case("yaml", "empty", _yaml(lambda t: "", "space.yaml", "not found", names_file=False)),
    Case("yaml", "wrong type", _yaml(_sub("epochs: 2", "epochs: two"), "train.epochs", "'two'")),
    Case("yaml", "wrong type section", _yaml(
        lambda t: yaml.safe_dump({**yaml.safe_load(t), "train": 5}), "train", "5")),
    Case("yaml", "out of range", _yaml(_sub("batch_size: 4", "batch_size: 0"), "batch_size", "0")),
    Case("yaml", "non-finite", _yaml(_sub("train:\n", "train:\n  lr: .nan\n"), "train.lr", "nan")),
    Case("yaml", "wrong encoding", _yaml(lambda t: t.encode(UTF16), ":1:", "not UTF-8")),
    Case("yaml", "search.yaml duplicate key (report.py)", _search_yaml),
]


# -- pareto.csv (retrain.py --pareto) -------------------------------------------------------------
def _pareto(text_of: Callable[[str], str | bytes], *fragments: str):
    def make(good, tmp):
        path = tmp / "search" / "pareto.csv"
        path.parent.mkdir()
        text = text_of(good["pareto"].read_text())
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return _retrain, ["--pareto", path, "--pick", "best", "--config", TINY,
                          "--out", tmp / "r", "--no-progress"], [str(path), *fragments]
    return make


PARETOS = [
    Case("pareto.csv", "missing column", _pareto(lambda t: t.replace("arch,", "name,"), "'arch'")),
    Case("pareto.csv", "malformed row", _pareto(lambda t: t + "a,b,c,d,e\n", "not a readable CSV")),
    Case("pareto.csv", "empty", _pareto(lambda t: "", "not a readable CSV")),
    Case("pareto.csv", "wrong type", _pareto(lambda t: t.replace(",0.9,", ",fast,"), ":2:",
                                             "latency_ms", "'fast'")),
    Case("pareto.csv", "out of range", _pareto(lambda t: t.replace(",0.9,", ",-5,"), ":2:",
                                               "latency_ms")),
    Case("pareto.csv", "non-finite", _pareto(lambda t: t.replace(",0.5", ",nan"), ":2:", "ap_mean")),
    Case("pareto.csv", "wrong encoding", _pareto(lambda t: t.encode(UTF16), "not a readable CSV")),
]


# -- latency table (evolve.py --latency-table; the table is read before the supernet) ----------------
def _table(damage, *fragments: str):
    def make(good, tmp):
        table = tmp / "latency.csv"
        _copy(good["table"], table)
        _copy(Path(f"{good['table']}.json"), Path(f"{table}.json"))
        damage(table)
        supernet = tmp / "supernet.pt"
        supernet.write_bytes(b"never read")
        return _evolve, ["--config", TINY, "--supernet", supernet, "--latency-table", table,
                         "--latency-budget", "1ms", "--out", tmp / "s", "--no-progress"], [
            str(table), *fragments]
    return make


def _table_value(value: str):
    def damage(table):  # the entry on line 6
        frame = pd.read_csv(table).astype({"median_ms": object})
        frame.loc[4, "median_ms"] = value
        frame.to_csv(table, index=False)
    return damage


TABLES = [
    Case("latency table", "NaN entry", _table(_table_value("nan"), "line 6", "nan")),
    Case("latency table", "negative entry", _table(_table_value("-5"), "line 6", "-5")),
    Case("latency table", "wrong type", _table(_table_value("slow"), "line 6", "'slow'")),
    Case("latency table", "missing column", _table(
        lambda t: _edit_lines(t, lambda ls: ls.__setitem__(0, ls[0].replace("median_ms", "med"))),
        "'median_ms'")),
    Case("latency table", "empty", _table(lambda t: t.write_text(""), "not a readable CSV")),
    Case("latency table", "wrong encoding", _table(lambda t: _encode(t, UTF16), "not a readable CSV")),
    Case("latency table", "sidecar truncated", _table(
        lambda t: Path(f"{t}.json").write_text(Path(f"{t}.json").read_text()[:50]), "not JSON")),
    Case("latency table", "sidecar wrong type", _table(lambda t: Path(f"{t}.json").write_text("[1]"),
                                                       "expected an object")),
    Case("latency table", "non-finite calibration", _table(
        lambda t: Path(f"{t}.json").write_text(Path(f"{t}.json").read_text().replace(
            '"a": 1.0', '"a": NaN')), "calibration.a", "nan")),
]


# -- checkpoints (stages.predict --weights) -----------------------------------------------------
def _checkpoint(write, *fragments: str):
    def make(good, tmp):
        path = tmp / "model.pt"
        write(path)
        return _predict, ["--weights", path, "--images", tmp, "--out", tmp / "p",
                          "--no-progress"], [str(path), *fragments]
    return make


CHECKPOINTS = [
    Case("checkpoint", "empty", _checkpoint(lambda p: p.write_bytes(b""), "not a readable")),
    Case("checkpoint", "malformed", _checkpoint(lambda p: p.write_bytes(b"\x80\x02garbage" * 9),
                                                "not a readable")),
    Case("checkpoint", "code-running pickle", _checkpoint(
        lambda p: p.write_bytes(b"cos\nsystem\n(S'echo owned'\ntR."), "not a readable")),
    Case("checkpoint", "wrong type", _checkpoint(lambda p: torch.save(torch.zeros(3), p),
                                                 "not a facenas checkpoint")),
    Case("checkpoint", "dict without entries", _checkpoint(lambda p: torch.save({"model": {}}, p),
                                                           "not a facenas checkpoint")),
]


# -- arch strings (retrain.py --arch) -------------------------------------------------------------
def _arch(text: str, *fragments: str):
    def make(good, tmp):
        return _retrain, ["--arch", text, "--config", TINY, "--out", tmp / "r"], [*fragments]
    return make


ARCHS = [
    Case("arch", "malformed", _arch("K3C8S2-E3K3X8S2", "'E3K3X8S2'")),
    Case("arch", "empty", _arch("", "''")),
    Case("arch", "truncated", _arch("K3C8S2-E3K3C8", "'E3K3C8'")),
    Case("arch", "out of range", _arch(BASELINE.replace("K3", "K9"), "arch outside the space", "K9")),
    Case("arch", "wrong encoding", _arch(BASELINE.replace("C8", "C８"), "C８")),  # a full-width 8
]


# -- command-line values ----------------------------------------------------------------------------
def _cli(main, argv_of: Callable[[dict, Path], list], *fragments: str):
    def make(good, tmp):
        return main, argv_of(good, tmp), [*fragments]
    return make


def _search_argv(budget: str, *extra: str):
    def argv(good, tmp):
        supernet = tmp / "supernet.pt"
        supernet.write_bytes(b"never read")
        return ["--config", TINY, "--supernet", supernet, "--latency-table", good["table"],
                f"--latency-budget={budget}", "--out", tmp / "s", "--no-progress", *extra]
    return argv


CLI = [
    Case("cli", "budget non-finite", _cli(_evolve, _search_argv("nan"), "latency budget 'nan'")),
    Case("cli", "budget negative", _cli(_evolve, _search_argv("-5ms"), "'-5ms'")),
    Case("cli", "budget wrong type", _cli(_evolve, _search_argv("fast"), "'fast'")),
    Case("cli", "population out of range", _cli(_evolve, _search_argv("1ms", "--population", "0"),
                                                "search", "population", "got 0")),
    Case("cli", "--set malformed", _cli(_train, lambda g, t: ["--config", TINY, "--out", t / "r",
                                                              "--set", "train.epochs=[1"],
                                        "--set", "train.epochs=[1")),
    Case("cli", "--set non-finite", _cli(_train, lambda g, t: ["--config", TINY, "--out", t / "r",
                                                               "--set", "train.lr=.inf"],
                                         "train.lr", "inf")),
    Case("cli", "--epochs out of range", _cli(_retrain, lambda g, t: [
        "--arch", "baseline", "--config", TINY, "--out", t / "r", "--epochs", "-1"],
        "train.epochs", "got -1")),
    Case("cli", "--iou out of range", _cli(_evaluate, lambda g, t: [
        "--gt", g["wider"] / "ground_truth", "--pred", g["pred"], "--iou", "1.5"], "--iou", "1.5")),
    Case("cli", "--iou non-finite", _cli(_evaluate, lambda g, t: [
        "--gt", g["wider"] / "ground_truth", "--pred", g["pred"], "--iou", "nan"], "--iou", "nan")),
    Case("cli", "--pick out of range", _cli(_retrain, lambda g, t: [
        "--pareto", g["pareto"], "--pick", "7", "--config", TINY, "--out", t / "r"], "--pick 7")),
]

CASES = ANNOTATIONS + IMAGES + MATS + PREDICTIONS + YAMLS + PARETOS + TABLES + CHECKPOINTS + ARCHS + CLI


@pytest.mark.parametrize("case", CASES, ids=[f"{c.reader}: {c.name}" for c in CASES])
def test_bad_input_gives_one_line_naming_file_and_value(case, good, tmp_path):
    main, argv, fragments = case.make(good, tmp_path)
    message = _error(main, argv)  # one line starting with "error: "
    for fragment in fragments:
        assert fragment in message, (fragment, message)
