"""Detections on disk in the official WIDER FACE submission format, one text file per image.

Layout and format (what the official evaluation reads)::

    <pred_dir>/0--Parade/0_Parade_marchingband_1_465.txt
        0_Parade_marchingband_1_465.jpg    # line 1: image name (stem, or with .jpg / event folder)
        2                                  # line 2: number of detections
        345.0 211.5 4.0 4.0 0.97           # x1 y1 w h score, pixels, one detection per line
        331.0 126.0 3.0 3.0 0.41

Files are written sorted by score, descending (stable), because the evaluator's thresholding
assumes that order. Numbers are written in Python's shortest round-trip form, so reading a file
back gives bit-identical float64 values.

    >>> write_predictions("preds", "0--Parade/0_Parade_marchingband_1_465.jpg",
    ...                   np.array([[345, 211, 4, 4, 0.41], [331, 126, 3, 3, 0.97]]))  # doctest: +SKIP
    >>> read_predictions("preds")["0--Parade/0_Parade_marchingband_1_465"][:, 4]       # doctest: +SKIP
    array([0.97, 0.41])
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np

from core.io import atomic_write_text, read_text

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def image_key(name: str) -> str:
    """'<event>/<image>.jpg' or '<event>/<image>' -> '<event>/<image>' (the key evaluation uses)."""
    p = PurePosixPath(name)
    if len(p.parts) != 2:
        raise ValueError(f"expected an image name like <event>/<image>.jpg, got {name!r}")
    return str(p.with_suffix("")) if p.suffix.lower() in IMAGE_SUFFIXES else str(p)


def sort_by_score(boxes: np.ndarray) -> np.ndarray:
    """Rows of an (N, 5) array ordered by score (column 4), descending; ties keep their order."""
    return boxes[np.argsort(-boxes[:, 4], kind="stable")]


def _check_boxes(boxes: np.ndarray, what: str) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 5)
    if boxes.ndim != 2 or boxes.shape[1] != 5:
        raise ValueError(f"{what}: expected (N, 5) boxes x y w h score, got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{what}: boxes hold NaN or infinite values")
    return boxes


def _fmt(v: float) -> str:
    s = repr(float(v))
    return s[:-2] if s.endswith(".0") else s


def write_predictions(pred_dir: str | Path, image_name: str, boxes: np.ndarray) -> Path:
    """Write `<pred_dir>/<event>/<stem>.txt` for one image; boxes (N, 5) x y w h score."""
    key = image_key(image_name)
    boxes = sort_by_score(_check_boxes(boxes, key))
    lines = [PurePosixPath(image_name).name, str(len(boxes))]
    lines += [" ".join(_fmt(v) for v in row) for row in boxes]
    path = Path(pred_dir) / f"{key}.txt"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def read_prediction_file(path: str | Path) -> np.ndarray:
    """Parse one prediction file into (N, 5) float64; ValueError names the file and 1-based line."""
    path = Path(path)
    lines = read_text(path).splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are harmless
        lines.pop()
    if len(lines) < 2:
        raise ValueError(f"{path}:{len(lines) + 1}: file ends before the detection count "
                         "(expected: image name, count, then x y w h score lines)")
    # The official code keys detections by this name, not by the file name: they must agree.
    named = PurePosixPath(lines[0].strip().replace("\\", "/")).name
    if named.lower().endswith(IMAGE_SUFFIXES):
        named = named.rsplit(".", 1)[0]
    if named != path.stem:
        raise ValueError(f"{path}:1: image name {lines[0].strip()!r} does not match the file name "
                         f"(expected {path.stem} or {path.stem}.jpg, optionally after <event>/)")
    try:
        n = int(lines[1].strip())
    except ValueError:
        raise ValueError(f"{path}:2: expected the number of detections, got {lines[1].strip()!r}") from None
    if n < 0:
        raise ValueError(f"{path}:2: negative detection count {n}")
    if len(lines) - 2 != n:
        raise ValueError(f"{path}:{min(len(lines), n + 2) + 1}: count on line 2 says {n} detections, "
                         f"file has {len(lines) - 2} detection lines")
    rows = []
    for lineno, line in enumerate(lines[2:], start=3):
        try:
            row = [float(t) for t in line.split()]
        except ValueError:
            row = []
        if len(row) != 5 or not np.isfinite(row).all():
            raise ValueError(f"{path}:{lineno}: expected 5 finite numbers x y w h score, "
                             f"got {line.strip()!r}")
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(n, 5)


def read_predictions(pred_dir: str | Path) -> dict[str, np.ndarray]:
    """Every `<pred_dir>/<event>/<stem>.txt`, keyed '<event>/<stem>', each (N, 5) float64 x y w h score."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder not found: {pred_dir}")
    return {f"{p.parent.name}/{p.stem}": read_prediction_file(p) for p in sorted(pred_dir.glob("*/*.txt"))}
