"""The official WIDER FACE evaluation (Easy / Medium / Hard AP), reproduced number for number.

Inputs are the official ground truth (``ground_truth/wider_face_val.mat`` and
``wider_{easy,medium,hard}_val.mat``) and a prediction folder ``<pred>/<event>/<stem>.txt`` in the
submission format (see ``detection/prediction_files.py``). The protocol is that of the official MATLAB
code and of its widely used Python port:

1. Scores are min-max normalised over all predictions of all images: (s - min) / (max - min).
2. Per image and setting, faces outside the setting's keep list are *ignored*: a detection whose
   best match (IoU >= 0.5, +1-pixel convention, first gt on ties) is an ignored face is neither a
   true nor a false positive. Detections are taken by descending score; a second detection on an
   already recalled face is a false positive. Images without gt boxes or without detections are
   skipped, but their kept faces still count in the recall denominator (so false positives on an
   image without faces are not counted, exactly as in the official code).
3. 1,000 score thresholds 0.999, 0.998, ..., 0; proposals and recalled faces are summed over
   images; AP is the VOC all-point area under the monotone precision envelope.

Deliberate, documented choices where the official code is silent or undefined:

- Detections are sorted by score (descending, stable) first. The official code assumes files are
  sorted; on unsorted files its thresholding would count low-score detections too.
- 0/0 precision (thresholds above every counted proposal) is NaN, as in the Python port. Those
  entries only occur where recall is 0, so they never reach the AP sum: the AP is finite and equals
  the port's. A setting with no kept face at all gives AP NaN, also as in the port.
- If every score is the same (max == min) the normalisation divides by zero; the official code then
  drops every detection (NaN >= t is false) and scores 0. Here all normalised scores become 1:
  every detection is kept at every threshold (one operating point, AP = precision * recall).
- The min/max are the true ones. The Python port starts them at 0 and 1, which gives the same
  result whenever scores lie in [0, 1] (any probability); for scores all above 1 or all below 0
  it differs, and the true min-max keeps AP invariant to affine rescaling of the scores.

    $ facenas evaluate --gt widerface/ground_truth --pred runs/x/preds
    {"easy": 0.912, "medium": 0.884, "hard": 0.701}
    $ facenas evaluate --gt widerface/ground_truth --pred runs/x/preds --subset
    $ facenas evaluate --annotations my_test/bbx_gt.txt --pred runs/x/preds
    {"all": 0.801, "min50": 0.953}

``--subset`` restricts the protocol to the images that have a prediction file (faces of the other
images are not counted); without it a missing prediction file is an error.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import scipy.io

from detection.annotations import ImageAnnotation, read_annotations
from detection.prediction_files import image_key, read_predictions, sort_by_score
from core.io import atomic_write_bytes

SETTINGS = ("easy", "medium", "hard")
THRESH_NUM = 1000
VAL_FILE = "wider_face_val.mat"


def _setting_file(setting: str) -> str:
    return f"wider_{setting}_val.mat"


# --------------------------------------------------------------------------- ground truth


@dataclass
class GroundTruth:
    events: list[str]  # in .mat order, e.g. "0--Parade"
    names: list[str]  # per image "<event>/<stem>", in .mat order
    boxes: list[np.ndarray]  # per image (N, 4) float64 x y w h, pixels
    keep: dict[str, list[np.ndarray]]  # setting -> per image int64 1-based indices of counted faces


def _cell_str(x: np.ndarray) -> str:
    return str(np.asarray(x).ravel()[0])


def _load_mat(path: Path, keys: tuple[str, ...]) -> dict:
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises ValueError, OSError, zlib.error, MatReadError,
        # TypeError ... for truncated or corrupt files: each means "not readable"
        detail = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"{path}: not a readable .mat file ({type(err).__name__}: {detail})") from None
    missing = [k for k in keys if k not in mat]
    if missing:
        raise ValueError(f"{path}: not a WIDER FACE ground-truth file, missing {', '.join(missing)}")
    return mat


@contextlib.contextmanager
def _structure(path: Path):
    """A .mat that loads but is not laid out as the official one: ValueError naming the file."""
    try:
        yield
    except (IndexError, TypeError, AttributeError, ValueError, OverflowError) as err:
        raise ValueError(f"{path}: not laid out as the official WIDER FACE file "
                         f"({type(err).__name__}: {err})") from None


def load_ground_truth(gt_dir: str | Path) -> GroundTruth:
    """Read the official (or `write_ground_truth`) .mat files from `gt_dir`."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"ground-truth folder not found: {gt_dir}")
    files = [VAL_FILE] + [_setting_file(s) for s in SETTINGS]
    missing = [f for f in files if not (gt_dir / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{gt_dir}: missing ground-truth file(s): {', '.join(missing)}")
    val = _load_mat(gt_dir / VAL_FILE, ("event_list", "file_list", "face_bbx_list"))
    events, names, boxes = [], [], []
    with _structure(gt_dir / VAL_FILE):
        for i in range(val["event_list"].shape[0]):
            event = _cell_str(val["event_list"][i, 0])
            events.append(event)
            files_i, boxes_i = val["file_list"][i, 0], val["face_bbx_list"][i, 0]
            for j in range(files_i.shape[0]):
                names.append(f"{event}/{_cell_str(files_i[j, 0])}")
                boxes.append(np.asarray(boxes_i[j, 0], dtype=np.float64).reshape(-1, 4))
    keep = {}
    for setting in SETTINGS:
        path = gt_dir / _setting_file(setting)
        gt_list = _load_mat(path, ("gt_list",))["gt_list"]
        with _structure(path):
            flat = [np.asarray(gt_list[i, 0][j, 0], dtype=np.int64).ravel()
                    for i in range(gt_list.shape[0]) for j in range(gt_list[i, 0].shape[0])]
        if len(flat) != len(names):
            raise ValueError(f"{path}: gt_list covers {len(flat)} images, {VAL_FILE} has {len(names)}")
        for name, k, b in zip(names, flat, boxes):
            if k.size and (k.min() < 1 or k.max() > len(b)):
                raise ValueError(f"{path}: keep index out of 1..{len(b)} for {name}")
        keep[setting] = flat
    return GroundTruth(events, names, boxes, keep)


def _cells(items: list) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)  # MATLAB cell column, as in the official files
    for i, x in enumerate(items):
        out[i, 0] = x
    return out


def _savemat(path: Path, data: dict) -> None:
    buf = io.BytesIO()
    scipy.io.savemat(buf, data, do_compression=True)
    atomic_write_bytes(path, buf.getvalue())


def write_ground_truth(gt_dir: str | Path, images: list[tuple[str, np.ndarray]],
                       keep: dict[str, list[np.ndarray]]) -> None:
    """Write wider_face_val.mat + wider_{easy,medium,hard}_val.mat in the official structure.

    images: ('<event>/<image>.jpg', (N, 4) boxes x y w h); keep[setting][i]: 1-based indices of the
    faces of images[i] counted in that setting. Events keep their order of first appearance.
    Boxes are stored int32 like the official files when all integral, else float64. The official
    attribute lists (blur_label_list, ...) are not written: evaluation does not read them.
    """
    if set(keep) != set(SETTINGS):
        raise ValueError(f"keep must have exactly the settings {SETTINGS}, got {sorted(keep)}")
    by_event: dict[str, list[int]] = {}
    for i, (name, _) in enumerate(images):
        event = PurePosixPath(image_key(name)).parent.name
        by_event.setdefault(event, []).append(i)
    for setting, per_image in keep.items():
        if len(per_image) != len(images):
            raise ValueError(f"keep[{setting!r}] has {len(per_image)} entries for {len(images)} images")

    def boxes_of(i: int) -> np.ndarray:
        b = np.asarray(images[i][1], dtype=np.float64).reshape(-1, 4)
        return b.astype(np.int32) if np.array_equal(b, np.round(b)) else b

    def keep_of(setting: str, i: int) -> np.ndarray:
        k = np.asarray(keep[setting][i], dtype=np.int64).ravel()
        if k.size and (k.min() < 1 or k.max() > len(boxes_of(i))):
            raise ValueError(f"keep[{setting!r}][{i}] ({images[i][0]}): indices must be in "
                             f"1..{len(boxes_of(i))}, got {k.tolist()}")
        return k.astype(np.uint8 if k.size == 0 or k.max() < 256 else np.uint16).reshape(-1, 1)

    groups = list(by_event.values())
    common = {
        "event_list": _cells([np.array([e]) for e in by_event]),
        "file_list": _cells([_cells([np.array([PurePosixPath(image_key(images[i][0])).name]) for i in g])
                             for g in groups]),
        "face_bbx_list": _cells([_cells([boxes_of(i) for i in g]) for g in groups]),
    }
    gt_dir = Path(gt_dir)
    _savemat(gt_dir / VAL_FILE, common)
    for setting in SETTINGS:
        gt_list = _cells([_cells([keep_of(setting, i) for i in g]) for g in groups])
        _savemat(gt_dir / _setting_file(setting), {**common, "gt_list": gt_list})


# --------------------------------------------------------------------------- protocol pieces


def box_overlaps(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU (P, G) of x1 y1 x2 y2 boxes with the +1-pixel convention (a box [x, x] is 1 px wide)."""
    area_p = (pred[:, 2] - pred[:, 0] + 1) * (pred[:, 3] - pred[:, 1] + 1)
    area_g = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    iw = np.minimum(pred[:, None, 2], gt[None, :, 2]) - np.maximum(pred[:, None, 0], gt[None, :, 0]) + 1
    ih = np.minimum(pred[:, None, 3], gt[None, :, 3]) - np.maximum(pred[:, None, 1], gt[None, :, 1]) + 1
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = (area_p[:, None] + area_g[None, :]) - inter  # same operation order as the official code
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def _xyxy(boxes: np.ndarray) -> np.ndarray:
    out = np.array(boxes[:, :4], dtype=np.float64)
    out[:, 2:] += out[:, :2]  # x2 = x + w (no -1: the official convention)
    return out


def best_match(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per detection (x y w h ...) the max IoU over gt (x y w h) boxes and its (first) argmax."""
    overlaps = box_overlaps(_xyxy(pred), _xyxy(gt))
    return overlaps.max(axis=1), overlaps.argmax(axis=1)


def _eval_matches(max_iou: np.ndarray, gt_index: np.ndarray, ignore: np.ndarray,
                  iou: float) -> tuple[np.ndarray, np.ndarray]:
    # The official loop, vectorised: a detection's best gt does not depend on earlier detections,
    # so it is -1 (neither TP nor FP) iff it hits an ignored face, and a counted face is recalled
    # by the first detection (in score order) that hits it; later hits stay proposals (= FPs).
    hit = max_iou >= iou
    proposal_list = np.where(hit & (ignore[gt_index] == 0), -1, 1)
    counted_hits = np.flatnonzero(hit & (ignore[gt_index] == 1))
    _, first = np.unique(gt_index[counted_hits], return_index=True)
    newly_recalled = np.zeros(len(max_iou), dtype=np.int64)
    newly_recalled[counted_hits[first]] = 1
    return np.cumsum(newly_recalled), proposal_list


def image_eval(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray,
               iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One image: pred (P, 5) x y w h score sorted by score desc, gt (G, 4) x y w h, ignore (G,)
    with 1 = counted. Returns pred_recall (P,) faces recalled by detections [0..h] and
    proposal_list (P,) with 1 = proposal, -1 = on an ignored face."""
    max_iou, gt_index = best_match(pred, gt)
    return _eval_matches(max_iou, gt_index, np.asarray(ignore), iou)


def thresholds(thresh_num: int = THRESH_NUM) -> np.ndarray:
    return 1 - (np.arange(thresh_num) + 1) / thresh_num  # 0.999 ... 0, as the official loop


def image_pr_info(scores: np.ndarray, proposal_list: np.ndarray, pred_recall: np.ndarray,
                  thresh: np.ndarray | None = None) -> np.ndarray:
    """(T, 2) [proposals, recalled] per threshold; `scores` normalised and sorted descending."""
    thresh = thresholds() if thresh is None else thresh
    n_above = np.searchsorted(-scores, -thresh, side="right")  # detections with score >= thresh
    last = np.maximum(n_above - 1, 0)
    proposals = np.cumsum(proposal_list == 1)[last]
    recalled = pred_recall[last]
    return np.where((n_above > 0)[:, None], np.stack([proposals, recalled], axis=1), 0).astype(np.float64)


def dataset_pr_curve(pr_info: np.ndarray, count_face: int) -> tuple[np.ndarray, np.ndarray]:
    """Summed (T, 2) [proposals, recalled] -> (precision, recall); 0/0 precision is NaN (port)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return pr_info[:, 1] / pr_info[:, 0], pr_info[:, 1] / count_face


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP: area under the precision envelope (max to the right), NaN propagating."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # = the official right-to-left np.maximum loop
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def normalize_scores(predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sorted copies (score desc) with scores min-max normalised over all images (see docstring)."""
    out = {k: sort_by_score(np.asarray(v, dtype=np.float64).reshape(-1, 5)) for k, v in predictions.items()}
    bad = [k for k, v in out.items() if not np.isfinite(v).all()]
    if bad:
        raise ValueError(f"predictions of {bad[0]} hold NaN or infinite values")
    scores = [v[:, 4] for v in out.values() if len(v)]
    if not scores:
        return out
    lo = min(s.min() for s in scores)
    hi = max(s.max() for s in scores)
    for v in out.values():
        v[:, 4] = (v[:, 4] - lo) / (hi - lo) if hi > lo else 1.0
    return out


# --------------------------------------------------------------------------- evaluation


def _select(predictions: dict[str, np.ndarray], names: list[str], subset: bool) -> list[int]:
    """Indices of the gt images to evaluate; errors for unknown or (without subset) missing files."""
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(predictions) - set(index))
    if unknown:
        raise ValueError(f"{len(unknown)} prediction file(s) match no ground-truth image, e.g. "
                         f"{', '.join(unknown[:3])}")
    missing = [n for n in names if n not in predictions]
    if missing and not subset:
        raise ValueError(f"{len(missing)} of {len(names)} ground-truth images have no prediction file, "
                         f"e.g. {', '.join(missing[:3])} (use subset=True / --subset to evaluate "
                         f"only the images with predictions)")
    if not predictions:
        raise ValueError("no predictions to evaluate")
    return [i for i, n in enumerate(names) if n in predictions]


def _evaluate(predictions: dict[str, np.ndarray], names: list[str], boxes: list[np.ndarray],
              keep: dict[str, list[np.ndarray]], subset: bool, iou: float) -> dict[str, float]:
    preds = normalize_scores({image_key(k): v for k, v in predictions.items()})
    if len(preds) != len(predictions):
        raise ValueError("predictions hold the same image twice (with and without extension)")
    selected = _select(preds, names, subset)
    thresh = thresholds()
    # IoU matching does not depend on the setting: compute it once per image.
    matches = {i: best_match(preds[names[i]], boxes[i]) for i in selected
               if len(boxes[i]) and len(preds[names[i]])}
    result = {}
    for setting, per_image in keep.items():
        pr_info = np.zeros((len(thresh), 2))
        count_face = 0
        for i in selected:
            count_face += len(per_image[i])
            if i not in matches:
                continue
            pr_info += _image_pr(preds[names[i]], boxes[i], per_image[i], matches[i], iou, thresh)
        precision, recall = dataset_pr_curve(pr_info, count_face)
        result[setting] = voc_ap(recall, precision)
    return result


def _image_pr(pred: np.ndarray, boxes: np.ndarray, keep: np.ndarray, match, iou: float,
              thresh: np.ndarray) -> np.ndarray:
    ignore = np.zeros(len(boxes))
    ignore[np.asarray(keep, dtype=np.int64) - 1] = 1
    pred_recall, proposal_list = _eval_matches(*match, ignore, iou)
    return image_pr_info(pred[:, 4], proposal_list, pred_recall, thresh)


def paired_difference(boot: dict, a: str, b: str) -> dict:
    """``ap(a) - ap(b)`` from a `bootstrap_ap` result, whichever order it stored the pair in."""
    if f"{a} - {b}" in boot:
        return boot[f"{a} - {b}"]
    return {k: {"value": -v["value"], "lo": -v["hi"], "hi": -v["lo"]}
            for k, v in boot[f"{b} - {a}"].items()}


def per_image_pr(predictions: dict[str, np.ndarray], gt: GroundTruth, iou: float = 0.5
                 ) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The official protocol's per-image terms on the images that have predictions: names and,
    per setting, ((n, T, 2) [proposals, recalled] per threshold, (n,) kept faces).

    AP is additive over images in these terms (`evaluate` sums them), which is what a bootstrap
    over images resamples (`bootstrap_ap`). Scores are normalised once over all the images.
    """
    preds = normalize_scores({image_key(k): v for k, v in predictions.items()})
    selected = _select(preds, gt.names, subset=True)
    thresh = thresholds()
    out = {}
    for setting, keep in gt.keep.items():
        pr = np.zeros((len(selected), len(thresh), 2))
        counts = np.zeros(len(selected))
        for row, i in enumerate(selected):
            counts[row] = len(keep[i])
            pred = preds[gt.names[i]]
            if len(gt.boxes[i]) and len(pred):
                pr[row] = _image_pr(pred, gt.boxes[i], keep[i], best_match(pred, gt.boxes[i]), iou, thresh)
        out[setting] = (pr, counts)
    return [gt.names[i] for i in selected], out


def _ap_of(pr: np.ndarray, counts: np.ndarray, idx: np.ndarray) -> float:
    precision, recall = dataset_pr_curve(pr[idx].sum(0), counts[idx].sum())
    return float(np.nan_to_num(voc_ap(recall, precision)))


def bootstrap_ap(predictions: dict[str, dict[str, np.ndarray]], gt: GroundTruth, n: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict:
    """AP of each model and every paired difference with intervals from a bootstrap over images.

    `predictions`: model name -> its predictions on the same images. Each resample draws the
    images with replacement once and scores every model on it (paired), so the interval of
    ``ap(a) - ap(b)`` excludes the image-sampling noise both share. Keys per model and per pair
    ``"a - b"``: easy/medium/hard/mean -> {"value", "lo", "hi"}.
    """
    names, terms = None, {}
    for model, preds in predictions.items():
        got, terms[model] = per_image_pr(preds, gt)
        if names is not None and got != names:
            raise ValueError(f"bootstrap_ap: {model!r} was not scored on the same images")
        names = got
    rng = np.random.default_rng(seed)
    draws = [np.arange(len(names))] + [rng.integers(0, len(names), len(names)) for _ in range(n)]
    settings = list(gt.keep)
    samples = {m: np.array([[_ap_of(*t[s], idx) for s in settings] for idx in draws])
               for m, t in terms.items()}  # (n + 1, settings); row 0 = the full set
    for m in samples:
        samples[m] = np.concatenate([samples[m], samples[m].mean(1, keepdims=True)], axis=1)
    keys = settings + ["mean"]
    out: dict = {"images": len(names), "resamples": n, "level": level}
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def summary(values: np.ndarray) -> dict:
        lo, hi = np.percentile(values[1:], q)
        return {"value": float(values[0]), "lo": float(lo), "hi": float(hi)}

    models = list(samples)
    for m in models:
        out[m] = {k: summary(samples[m][:, j]) for j, k in enumerate(keys)}
    for a in models:
        for b in models:
            if a < b:
                diff = samples[a] - samples[b]
                out[f"{a} - {b}"] = {k: summary(diff[:, j]) for j, k in enumerate(keys)}
    return out


def evaluate(predictions: dict[str, np.ndarray], gt: GroundTruth, subset: bool = False,
             iou: float = 0.5) -> dict[str, float]:
    """{"easy", "medium", "hard"} AP of predictions {'<event>/<stem>': (N, 5) x y w h score}."""
    return _evaluate(predictions, gt.names, gt.boxes, gt.keep, subset, iou)


def evaluate_annotations(predictions: dict[str, np.ndarray], annotations: list[ImageAnnotation],
                         min_size: float = 50, subset: bool = False, iou: float = 0.5) -> dict[str, float]:
    """AP on WIDER-format annotations: "all" counts every valid face; "min{min_size}" (default
    "min50") ignores faces narrower or shorter than `min_size` px. Invalid faces are ignored in
    both (detections on them are neither true nor false positives)."""
    names = [image_key(a.name) for a in annotations]
    if len(set(names)) != len(names):
        raise ValueError("annotations list the same image more than once")
    boxes = [a.boxes.astype(np.float64) for a in annotations]
    valid = [~a.invalid for a in annotations]
    big = [(b[:, 2] >= min_size) & (b[:, 3] >= min_size) for b in boxes]
    keep = {"all": [np.flatnonzero(v) + 1 for v in valid],
            f"min{min_size:g}": [np.flatnonzero(v & g) + 1 for v, g in zip(valid, big)]}
    return _evaluate(predictions, names, boxes, keep, subset, iou)


# --------------------------------------------------------------------------- CLI


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--gt", help="folder with wider_face_val.mat and wider_{easy,medium,hard}_val.mat")
    src.add_argument("--annotations", help="WIDER-format annotation text (prints all / min50 AP)")
    p.add_argument("--pred", required=True, help="prediction folder <pred>/<event>/<stem>.txt")
    p.add_argument("--subset", action="store_true", help="evaluate only images with a prediction file")
    p.add_argument("--iou", type=float, default=0.5)
    p.add_argument("--min-size", type=float, default=50, help="with --annotations: min face side, px")
    return p


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = get_args_parser().parse_args(argv)
    if not 0 < args.iou <= 1:  # also NaN
        raise SystemExit(f"error: --iou must be in (0, 1], got {args.iou}")
    if not 0 <= args.min_size < float("inf"):
        raise SystemExit(f"error: --min-size must be a finite number >= 0 (pixels), got {args.min_size}")
    try:
        predictions = read_predictions(args.pred)
        if args.gt is not None:
            result = evaluate(predictions, load_ground_truth(args.gt), args.subset, args.iou)
        else:
            annotations = read_annotations(args.annotations)
            if not annotations:
                raise ValueError(f"{args.annotations}: no images annotated (empty file)")
            result = evaluate_annotations(predictions, annotations, args.min_size, args.subset,
                                          args.iou)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
