"""Bad input through the entry scripts: each ends with one line `error: ...` naming the file, line
or value (never a traceback), or, for unreadable images, is skipped, counted and reported.

The library-level checks are tested beside their modules (test_data, test_evaluate, test_space,
test_latency, test_train, test_evolution); here the same inputs go through `main(argv)` of
train_supernet.py, evolve.py, retrain.py, latency.measure and detection.wider_eval.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from detection.config import DetectorConfig
from detection.data import DataConfig, resolve_root
from latency.config import LatencyConfig
from latency.keys import build_entries
from latency.measure import measure_table, table_meta
from core.experiment import Experiment

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "tiny.yaml"
OTHER_SPACE = "space.kernels=[3,5]"  # a --set that makes another search space
QUICK_TRAIN = ["--set", "train.eval_images=0", "--set", "train.epochs=1",
               "--set", "train.max_steps_per_epoch=1", "--sampler", "uniform"]  # retrain: [:-2]
BUDGET = "0.85ms"  # between the fastest and the slowest subnet of the fake tiny table


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "facenas-cache"  # shared with the other test files


@pytest.fixture(autouse=True)
def _cache_env(cache, monkeypatch):
    monkeypatch.setenv("FACENAS_CACHE", str(cache))


def _error(main, argv: list[str]) -> str:
    """The message `main(argv)` exits with: one line starting with 'error: '."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    message = str(info.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def _train(argv):
    from train_supernet import main
    return main(argv)


def _evolve(argv):
    from evolve import main
    return main(argv)


def _measure(argv):
    from latency.measure import main
    return main(argv)


def _retrain(argv):
    from retrain import main
    return main(argv)


# -- data ------------------------------------------------------------------------------------------
@pytest.fixture
def wider(tmp_path, cache, monkeypatch) -> Path:
    """A private copy of the generated tiny dataset (official WIDER FACE layout) to damage."""
    monkeypatch.setenv("FACENAS_CACHE", str(cache))
    exp = Experiment.from_yaml(TINY)
    root = tmp_path / "wider"
    shutil.copytree(resolve_root(exp.section("data", DataConfig)), root)
    return root


def _train_on(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--config", TINY, "--data", root, "--out", out, "--no-progress", *QUICK_TRAIN, *extra]


def _ann(root: Path, split: str = "train") -> Path:
    return root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"


def test_malformed_annotation_line_names_file_and_line(wider, tmp_path):
    lines = _ann(wider).read_text().splitlines()
    lines[2] = "44 16 eight 10 0 0 0 0 0 0"
    _ann(wider).write_text("\n".join(lines) + "\n")
    message = _error(_train, _train_on(wider, tmp_path / "run"))
    assert f"{_ann(wider)}:3:" in message and "'44 16 eight 10 0 0 0 0 0 0'" in message


def test_annotation_naming_a_missing_image(wider, tmp_path):
    name = _ann(wider).read_text().splitlines()[0]
    (wider / "WIDER_train" / "images" / name).unlink()
    message = _error(_train, _train_on(wider, tmp_path / "run"))
    assert str(_ann(wider)) in message and name in message and "1 of 24" in message


def test_empty_dataset(wider, tmp_path):
    _ann(wider).write_text("")
    message = _error(_train, _train_on(wider, tmp_path / "run"))
    assert f"{_ann(wider)}: empty dataset" in message


def test_missing_layout_names_the_path(tmp_path):
    message = _error(_train, _train_on(tmp_path / "nowhere", tmp_path / "run"))
    assert "not a WIDER FACE root" in message and "nowhere" in message


@pytest.mark.slow
def test_corrupt_and_truncated_jpegs_are_skipped_and_counted(wider, tmp_path, capsys):
    names = [line for line in _ann(wider).read_text().splitlines() if line.endswith(".jpg")]
    images = wider / "WIDER_train" / "images"
    truncated, garbage = images / names[0], images / names[1]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    garbage.write_bytes(b"not a jpeg at all")
    argv = _train_on(wider, tmp_path / "run", "--set", "train.max_steps_per_epoch=0")  # all images
    with pytest.warns(RuntimeWarning, match="skipping unreadable image") as record:
        summary = _train([str(a) for a in argv])
    warned = {str(w.message).split(": ")[0].removeprefix("skipping unreadable image ") for w in record}
    assert {str(truncated), str(garbage)} <= warned
    assert summary["skipped_images"] == 2 and summary["steps"] == 6  # 22 images in 6 batches
    assert "note: 2 unreadable training images were skipped" in capsys.readouterr().out


# -- configs ---------------------------------------------------------------------------------------
def _config(tmp_path: Path, edit) -> Path:
    """A copy of tiny.yaml changed by `edit(mapping)`."""
    data = yaml.safe_load(TINY.read_text())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_unknown_section_in_a_config_file(tmp_path):
    path = _config(tmp_path, lambda d: d.update(trian={"lr": 0.1}))
    message = _error(_train, ["--config", path, "--out", tmp_path / "run"])
    assert f"{path}: unknown key 'trian'" in message


@pytest.mark.parametrize("main, section, key, value, expected", [
    (_train, "train", "lrr", 0.1, "unknown key 'lrr'"),
    (_train, "data", "batch_size", "four", "expected an integer, got str 'four'"),
    (_evolve, "search", "populaton", 4, "unknown key 'populaton'"),
    (_evolve, "search", "seed", 1.5, "expected an integer, got float 1.5"),
    (_measure, "latency", "repeats", "many", "expected an integer, got str 'many'"),
    (_measure, "latency", "clock", "sundial", "'sundial'"),
])
def test_bad_config_value_names_file_section_and_key(tmp_path, main, section, key, value, expected):
    path = _config(tmp_path, lambda d: d.setdefault(section, {}).update({key: value}))
    argv = {_train: ["--config", path, "--out", tmp_path / "run"],
            _evolve: ["--config", path, "--latency-budget", BUDGET, "--out", tmp_path / "s"],
            _measure: ["--config", path, "--out", tmp_path / "t.csv"]}[main]
    message = _error(main, argv)
    assert str(path) in message and expected in message
    if "unknown" not in expected:
        assert f"{section}.{key}" in message


def test_invalid_block_in_the_config_names_the_token(tmp_path):
    def edit(data):
        data["space"]["baseline"]["stages"][1]["block"] = "E3K3C8X2"
    path = _config(tmp_path, edit)
    message = _error(_train, ["--config", path, "--out", tmp_path / "run"])
    assert "E3K3C8X2" in message and str(path) in message


def test_invalid_arch_string(tmp_path):
    message = _error(_retrain, ["--arch", "K3C8S2-E3K3X8S2-E3K3C16S2", "--config", TINY,
                                "--out", tmp_path / "r"])
    assert "bad block token 'E3K3X8S2' (block 1, character 7)" in message


def test_arch_outside_the_space(tmp_path):
    space = Experiment.from_yaml(TINY).space
    blocks = str(space.baseline).split("-")
    blocks[2] = blocks[2].replace("C16", "C64")  # parses, but no width choice gives 64 channels
    message = _error(_retrain, ["--arch", "-".join(blocks), "--config", TINY,
                                "--out", tmp_path / "r"])
    assert "arch outside the space" in message and "'E3K3C64S2'" in message


# -- search inputs: latency table, budget, supernet checkpoint ------------------------------------
def _fake_timing(entry, det, lat) -> dict:
    ms = 1e-3 * (entry.c_in + entry.c_out) * entry.height * entry.width / 64 + entry.kernel * 1e-3
    return {"median_ms": ms, "p90_ms": 1.1 * ms, "cv": 0.01, "pass_cv": float("nan")}


def _fake_table(out: Path, overrides: list[str]) -> Path:
    exp = Experiment.from_yaml(TINY, overrides)
    det, lat = exp.section("detector", DetectorConfig), LatencyConfig()
    measure_table(build_entries(exp.space, det, lat.context), out, table_meta(exp, overrides, lat, det), det, lat,
                  measure=_fake_timing, progress=False)
    return out


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("tables")
    return {"tiny": _fake_table(tmp / "tiny.csv", []),
            "other": _fake_table(tmp / "other.csv", [OTHER_SPACE])}


@pytest.fixture(scope="module")
def supernet(tmp_path_factory, cache) -> Path:
    out = tmp_path_factory.mktemp("supernet")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACENAS_CACHE", str(cache))
        _train(["--config", str(TINY), "--out", str(out), "--no-progress", *QUICK_TRAIN])
    return out / "supernet.pt"


def _search(supernet: Path, table: Path, out: Path, *extra) -> list:
    return ["--config", TINY, "--supernet", supernet, "--latency-table", table, "--out", out,
            "--population", "4", "--generations", "1", "--no-progress", *extra]


def test_table_from_another_input_size(tmp_path, supernet, tables):
    message = _error(_evolve, _search(supernet, tables["tiny"], tmp_path / "s", "--latency-budget",
                                      BUDGET, "--set", "detector.input_size=[96,96]"))
    assert str(tables["tiny"]) in message
    assert "input size [64, 64], but this run uses input size [96, 96]" in message


def test_table_from_another_space(tmp_path, supernet, tables):
    message = _error(_evolve, _search(supernet, tables["other"], tmp_path / "s",
                                      "--latency-budget", BUDGET))
    assert str(tables["other"]) in message and "space fingerprint" in message


@pytest.mark.parametrize("budget, expected", [
    ("fast", "cannot parse latency budget 'fast'"),
    ("0ms", "latency budget '0ms' must be a positive"),
    ("0.0001ms", "latency budget 0.0001 ms is below the fastest subnet"),
])
def test_unparsable_or_infeasible_budget(tmp_path, supernet, tables, budget, expected):
    message = _error(_evolve, _search(supernet, tables["tiny"], tmp_path / "s",
                                      f"--latency-budget={budget}"))
    assert expected in message


def test_supernet_checkpoint_from_another_space(tmp_path, supernet, tables):
    message = _error(_evolve, _search(supernet, tables["other"], tmp_path / "s", "--latency-budget",
                                      BUDGET, "--set", OTHER_SPACE))
    assert f"{supernet}: supernet checkpoint from another search space" in message


def test_truncated_or_missing_supernet_checkpoint(tmp_path, supernet, tables):
    broken = tmp_path / "supernet.pt"
    broken.write_bytes(supernet.read_bytes()[:1000])
    message = _error(_evolve, _search(broken, tables["tiny"], tmp_path / "s", "--latency-budget", BUDGET))
    assert f"{broken}: not a readable facenas checkpoint" in message
    message = _error(_evolve, _search(tmp_path / "none.pt", tables["tiny"], tmp_path / "s",
                                      "--latency-budget", BUDGET))
    assert "none.pt" in message


# -- output folders that already hold a run ---------------------------------------------------------
def test_search_folder_holding_a_search(tmp_path, supernet, tables):
    out = tmp_path / "s"
    args = _search(supernet, tables["tiny"], out, "--latency-budget", BUDGET)
    first = _evolve([str(a) for a in args])
    assert "already holds a search (checkpoint.json)" in _error(_evolve, args)
    assert "seed: checkpoint 0, now 1" in _error(_evolve, args + ["--resume", "--seed", "1"])
    assert "exclude each other" in _error(_evolve, args + ["--resume", "--overwrite"])
    again = _evolve([str(a) for a in args + ["--overwrite"]])
    pd.testing.assert_frame_equal(first.candidates, again.candidates)
    (out / "checkpoint.json").write_text('{"format": "something else"}')
    message = _error(_evolve, args + ["--resume"])
    assert f"{out / 'checkpoint.json'}: not a readable search checkpoint" in message


def test_old_pickled_search_checkpoint_is_never_loaded(tmp_path, supernet, tables):
    out = tmp_path / "s"
    out.mkdir()
    (out / "checkpoint.pkl").write_bytes(b"cos\nsystem\n(S'echo owned'\ntR.")  # would run a command
    args = _search(supernet, tables["tiny"], out, "--latency-budget", BUDGET)
    assert "already holds a search (checkpoint.pkl)" in _error(_evolve, args)
    message = _error(_evolve, args + ["--resume"])
    assert "checkpoint.pkl" in message and "never loaded" in message


@pytest.mark.slow
def test_retrain_folder_holding_another_run(tmp_path):
    out = tmp_path / "r"
    space = Experiment.from_yaml(TINY).space
    args = ["--config", TINY, "--out", out, "--no-progress", *QUICK_TRAIN[:-2],
            "--set", "retrain.eval_images=2", "--set", "retrain.check_images=1"]
    _retrain([str(a) for a in ["--arch", "baseline", *args]])
    assert "already holds a run" in _error(_retrain, ["--arch", "baseline", *args])
    message = _error(_retrain, ["--arch", str(space.smallest()), *args, "--resume"])
    assert "different config" in message and "arch" in message


# -- evaluator -------------------------------------------------------------------------------------
def test_prediction_folder_missing_images(tmp_path, cache):
    from detection.wider_eval import main
    from detection.prediction_files import write_predictions

    gt = resolve_root(Experiment.from_yaml(TINY).section("data", DataConfig)) / "ground_truth"
    names = [line for line in _ann(gt.parent, "val").read_text().splitlines() if line.endswith(".jpg")]
    write_predictions(tmp_path / "pred", names[0], np.array([[1, 2, 10, 10, 0.9]]))
    message = _error(main, ["--gt", gt, "--pred", tmp_path / "pred"])
    assert f"{len(names) - 1} of {len(names)} ground-truth images have no prediction file" in message
    assert names[1].removesuffix(".jpg") in message and "--subset" in message
