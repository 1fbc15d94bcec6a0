"""The generated dataset: deterministic, exactly the WIDER layout, cached with a completion marker."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from detection.annotations import read_annotations
from detection.data import WiderFaceDataset
from detection.wider_eval import load_ground_truth
from detection.synth import MARKER, MIN_FACE_PX, difficulty_keep, ensure_synthetic, render_image

SMALL = dict(n_train=6, n_val=5, size=160, workers=1)


def _files(root: Path) -> dict[str, bytes]:
    skip = {MARKER}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip and p.suffix != ".mat"}


def test_deterministic_by_seed(tmp_path):
    a = ensure_synthetic(tmp_path / "a", seed=3, **SMALL)
    b = ensure_synthetic(tmp_path / "b", seed=3, **SMALL)
    c = ensure_synthetic(tmp_path / "c", seed=4, **SMALL)
    fa, fb = _files(a), _files(b)
    assert len([k for k in fa if k.endswith(".jpg")]) == 11
    assert fa == fb  # annotation text and every image byte-identical
    assert fa["wider_face_split/wider_face_train_bbx_gt.txt"] != \
        _files(c)["wider_face_split/wider_face_train_bbx_gt.txt"]
    assert a.name == b.name != c.name  # the cache folder is keyed by the parameters


def test_layout_is_wider(tmp_path):
    root = ensure_synthetic(tmp_path, seed=0, **SMALL)
    for split, n in (("train", 6), ("val", 5)):
        ds = WiderFaceDataset(root, split)
        assert len(ds) == n
        image, boxes = ds[0]
        assert image.shape == (160, 160, 3) and boxes.shape[1] == 4
    anns = read_annotations(root / "wider_face_split/wider_face_val_bbx_gt.txt")
    assert all(a.name.split("/")[0].split("--")[1].startswith("Synthetic") for a in anns)
    gt = load_ground_truth(root / "ground_truth")
    by_name = {a.name[:-4]: a for a in anns}
    assert sorted(gt.names) == sorted(by_name)
    keeps = (gt.keep[s] for s in ("easy", "medium", "hard"))
    for name, boxes, easy, medium, hard in zip(gt.names, gt.boxes, *keeps):
        np.testing.assert_array_equal(boxes, by_name[name].boxes)
        assert set(easy) <= set(medium) <= set(hard)
        assert set(hard) == set(np.flatnonzero(by_name[name].invalid == 0) + 1)


def test_content_spans_sizes_and_difficulties():
    faces = [render_image(0, "train", i, 320) for i in range(24)]
    boxes = np.concatenate([f[2] for f in faces])
    attrs = np.concatenate([f[3] for f in faces])
    heights = boxes[:, 3]
    assert heights.min() <= MIN_FACE_PX + 1 and heights.max() >= 0.4 * 320
    assert (boxes[:, :2] >= 0).all() and (boxes[:, :2] + boxes[:, 2:] <= 320).all()
    for column in (0, 4):  # blur and occlusion each take all three levels
        assert set(attrs[:, column]) == {0, 1, 2}
    keep = [difficulty_keep(f[2], f[3]) for f in faces]
    n = {s: sum(len(k[s]) for k in keep) for s in ("easy", "medium", "hard")}
    assert 0 < n["easy"] < n["medium"] < n["hard"]
    assert len({f[0].split("/")[0] for f in faces}) >= 3  # several events


def test_cache_reused_and_half_written_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("FACENAS_CACHE", str(tmp_path))
    root = ensure_synthetic(seed=1, **SMALL)
    assert root.parent == tmp_path and (root / MARKER).is_file()
    marker = json.loads((root / MARKER).read_text())
    assert marker["seed"] == 1 and marker["n_train"] == 6
    before = (root / MARKER).stat().st_mtime_ns
    assert ensure_synthetic(seed=1, **SMALL) == root
    assert (root / MARKER).stat().st_mtime_ns == before  # reused, not regenerated

    # a killed run: marker missing, an image half-written, a staging folder of a dead process
    (root / MARKER).unlink()
    first = sorted((root / "WIDER_train/images").rglob("*.jpg"))[0]
    good = first.read_bytes()
    first.write_bytes(good[:100])
    dead_pid = 4_194_303  # above Linux's default pid_max range in practice
    try:
        os.kill(dead_pid, 0)
        pytest.skip("pid used for the stale staging folder is alive")
    except ProcessLookupError:
        pass
    except PermissionError:
        pytest.skip("cannot probe pids here")
    stale = tmp_path / f"{root.name}.partial-{dead_pid}"
    stale.mkdir()
    assert ensure_synthetic(seed=1, **SMALL) == root
    assert (root / MARKER).is_file() and first.read_bytes() == good and not stale.exists()


def test_tiny_images_and_bad_parameters(tmp_path):
    root = ensure_synthetic(tmp_path, n_train=3, n_val=2, size=32, workers=1)  # smallest allowed
    anns = read_annotations(root / "wider_face_split/wider_face_train_bbx_gt.txt")
    assert all((a.boxes[:, :2] + a.boxes[:, 2:] <= 32).all() for a in anns)
    with pytest.raises(ValueError, match="n_train"):
        ensure_synthetic(tmp_path, n_train=0, n_val=1, size=160)


@pytest.mark.slow
def test_parallel_generation_matches_serial(tmp_path):
    serial = ensure_synthetic(tmp_path / "s", seed=2, n_train=10, n_val=4, size=160, workers=1)
    parallel = ensure_synthetic(tmp_path / "p", seed=2, n_train=10, n_val=4, size=160, workers=2)
    assert _files(serial) == _files(parallel)
