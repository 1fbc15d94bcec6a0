"""The `facenas` command and the run folder: every subcommand answers --help, the root scripts are
the same commands, a stage that continues a run takes the run's experiment."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import yaml

import evolve
import pipeline
import report
import retrain
import train_supernet
from stages.cli import COMMANDS, TOOLS, main
from stages.run import DEFAULT_CONFIG, Run, RunFolder, arch_hash, resolve_config

ROOT = Path(__file__).resolve().parent.parent


def _help(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_stage_and_tool(capsys):
    out = _help(capsys, ["--help"])
    for name in [*COMMANDS, "latency", *TOOLS]:
        assert f"\n    {name}" in out


@pytest.mark.parametrize("argv,flags", [
    (["train"], ["--config", "--data", "--sampler", "--resume", "--overwrite", "--set"]),
    (["search"], ["--latency-budget", "--supernet", "--latency-table", "--algorithm", "--objective",
                  "--strict", "--resume", "--device"]),
    (["retrain"], ["--arch", "--pareto", "--pick", "--init", "--epochs", "--train-split"]),
    (["report"], ["--supernet-run", "--latency-table", "--retrained"]),
    (["pipeline"], ["--latency-budget", "--retrain-epochs", "--pick", "--trust-archs", "--data"]),
    (["latency", "model"], ["--table", "--folds", "--archs"]),
    (["latency", "measure"], ["--config", "--out", "--calibrate", "--import"]),
    (["latency", "validate"], ["--table", "--n"]),
    (["latency", "device-bench"], ["--threads"]),
    (["predict"], ["--weights", "--arch", "--images", "--out"]),
    (["evaluate"], ["--gt", "--annotations", "--pred", "--subset"]),
    (["bundle"], ["--config", "--out", "--subnets"]),
])
def test_every_subcommand_answers_help_with_its_flags(capsys, argv, flags):
    out = _help(capsys, [*argv, "--help"])
    assert out.startswith(f"usage: facenas {' '.join(argv)}")
    for flag in flags:
        assert flag in out


@pytest.mark.parametrize("script,name", [(train_supernet, "train"), (evolve, "search"),
                                         (retrain, "retrain"), (report, "report"),
                                         (pipeline, "pipeline")])
def test_root_scripts_are_the_facenas_commands(monkeypatch, script, name):
    seen = []
    monkeypatch.setattr(script, "run_command", lambda cmd, argv: seen.append((cmd, argv)) or "ok")
    assert script.main(["--x"]) == "ok" and seen == [(name, ["--x"])]
    assert len(Path(script.__file__).read_text().splitlines()) < 40  # a parser lives in stages.cli


def test_errors_are_one_line_naming_the_value(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["train", "--config", str(tmp_path / "nope.yaml")])
    assert "nope.yaml" in str(err.value) and str(err.value).startswith("error: ")
    with pytest.raises(SystemExit, match="--objective mnas .* excludes --algorithm random"):
        main(["search", "--latency-budget", "5ms", "--objective", "mnas", "--algorithm", "random"])
    with pytest.raises(SystemExit, match="not a packaged experiment .*tiny"):
        main(["pipeline", "--config", "no-such-experiment"])


def test_console_script_is_declared():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["options.entry_points"]["console_scripts"].split() == ["facenas", "=", "stages.cli:entry"]
    assert "experiments" in cfg["options"]["packages"] and cfg["options.package_data"]["experiments"]


def test_run_layout_and_packaged_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config("tiny") == ROOT / "experiments" / "tiny.yaml"
    assert DEFAULT_CONFIG == ROOT / "experiments" / "default.yaml"
    run = Run.create("tiny")
    assert run.root == Path("runs/tiny") and run.exp.name == "tiny"
    assert (run.supernet, run.table, run.pareto, run.confirmed, run.trust) == (
        Path("runs/tiny/supernet.pt"), Path("runs/tiny/latency.csv"),
        Path("runs/tiny/search/pareto.csv"), Path("runs/tiny/search/confirmed.csv"),
        Path("runs/tiny/retrain/trust.json"))
    assert run.retrain_dir("baseline") == Path("runs/tiny/retrain") / arch_hash("baseline")
    assert RunFolder("x").candidates == Path("x/search/candidates.csv")
    longer = run.with_overrides(["train.epochs=7"])
    assert longer.exp.raw["train"]["epochs"] == 7 and longer.root == run.root
    assert run.exp.raw["train"].get("epochs") != 7  # the original run is unchanged


def test_a_continued_run_takes_its_saved_experiment(tmp_path):
    folder = tmp_path / "runs" / "mine"
    with pytest.raises(FileNotFoundError, match="not a facenas run"):
        Run.open(folder)
    exp = Run.create("tiny", ["detector.input_size=[48,48]"]).exp
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(exp.resolved(), sort_keys=False))
    found = Run.find(None, beside=folder / "supernet.pt")  # no --config: the run's own
    assert found.root == folder and found.exp.raw["detector"]["input_size"] == [48, 48]
    assert found.exp.space.fingerprint() == exp.space.fingerprint()
    assert Run.find(None).config == DEFAULT_CONFIG  # nothing to continue: the default
