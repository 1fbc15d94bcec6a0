"""Official WIDER FACE evaluation: hand-worked cases, a literal transcription of the protocol as
reference, prediction I/O, and the real mini val set (skipped when ../shared is absent)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import scipy.io

from detection.annotations import read_annotations
from detection.wider_eval import (
    SETTINGS,
    box_overlaps,
    dataset_pr_curve,
    evaluate,
    evaluate_annotations,
    image_eval,
    load_ground_truth,
    main,
    voc_ap,
    write_ground_truth,
)
from detection.prediction_files import read_prediction_file, read_predictions, write_predictions

from conftest import MINI, needs_mini  # noqa: E402  (shared test data location)

# Faces used by the hand-worked cases: x y w h, far apart from each other.
A, B, C, F = [10, 10, 40, 40], [100, 10, 40, 40], [200, 10, 40, 40], [300, 300, 40, 40]


def _gt(tmp_path, images, keep=None):
    """Write `images` [(name, boxes)] as official .mat files and load them back.

    keep: per image 1-based kept indices, the same for all settings (default: every face)."""
    if keep is None:
        keep = [np.arange(1, len(b) + 1) for _, b in images]
    write_ground_truth(tmp_path, [(n, np.array(b, dtype=float).reshape(-1, 4)) for n, b in images],
                       {s: keep for s in SETTINGS})
    return load_ground_truth(tmp_path)


def _pred(*rows):
    """rows: (box, score) -> (N, 5)."""
    return np.array([[*box, s] for box, s in rows], dtype=float).reshape(-1, 5)


def _ap(result):
    assert result["easy"] == result["medium"] == result["hard"]
    return result["easy"]


# --------------------------------------------------------------------------- ground truth files


def test_ground_truth_round_trip_and_perfect_predictions(tmp_path):
    images = [("0--Parade/0_a.jpg", [A, B, [5.5, 7.25, 3, 4]]),  # a non-integral box: stored float64
              ("0--Parade/0_b.jpg", np.zeros((0, 4))),            # an image without faces
              ("1--Handshaking/1_c.jpg", [C, F])]
    keep = {"easy": [np.array([1]), np.array([], int), np.array([2])],
            "medium": [np.array([1, 2]), np.array([], int), np.array([1, 2])],
            "hard": [np.array([1, 2, 3]), np.array([], int), np.array([1, 2])]}
    write_ground_truth(tmp_path, [(n, np.asarray(b, float)) for n, b in images], keep)
    gt = load_ground_truth(tmp_path)
    assert gt.events == ["0--Parade", "1--Handshaking"]
    assert gt.names == ["0--Parade/0_a", "0--Parade/0_b", "1--Handshaking/1_c"]
    for (_, b), got in zip(images, gt.boxes):
        np.testing.assert_array_equal(got, np.asarray(b, float).reshape(-1, 4))
    for s in SETTINGS:
        for want, got in zip(keep[s], gt.keep[s]):
            np.testing.assert_array_equal(got, want)
    rng = np.random.default_rng(0)  # perfect boxes, arbitrary distinct scores
    preds = {n: np.c_[b, rng.random(len(b))] for n, b in zip(gt.names, gt.boxes)}
    assert evaluate(preds, gt) == {"easy": 1.0, "medium": 1.0, "hard": 1.0}


@needs_mini
def test_written_mat_has_the_official_structure(tmp_path):
    _gt(tmp_path, [("0--Parade/0_a.jpg", [A, B])])

    def shape_of(x):  # the nesting of cells, their shapes and element kinds
        if x.dtype == object:
            return ("cell", x.shape[1:], shape_of(x.flat[0]))
        return (x.dtype.kind, x.shape[1:] if x.dtype.kind in "iuf" else x.shape)

    for name in ["wider_face_val.mat", "wider_hard_val.mat"]:
        ours, official = scipy.io.loadmat(tmp_path / name), scipy.io.loadmat(MINI / "ground_truth" / name)
        for key in ["event_list", "file_list", "face_bbx_list"] + (["gt_list"] if "hard" in name else []):
            assert shape_of(ours[key]) == shape_of(official[key]), key


def test_missing_ground_truth_files_are_named(tmp_path):
    _gt(tmp_path, [("0--Parade/0_a.jpg", [A])])
    (tmp_path / "wider_medium_val.mat").unlink()
    (tmp_path / "wider_hard_val.mat").unlink()
    with pytest.raises(FileNotFoundError, match="wider_medium_val.mat, wider_hard_val.mat"):
        load_ground_truth(tmp_path)


# --------------------------------------------------------------------------- hand-worked protocol cases


def test_duplicate_detection_is_a_false_positive(tmp_path):
    gt = _gt(tmp_path, [("0--Parade/0_a.jpg", [A, B])])
    # Scores 3, 2, 1 normalise to 1, 0.5, 0. Thresholds 0.999 ... 0.501: {A} -> P 1, R 1/2;
    # 0.5 ... 0.001: {A, A'} -> P 1/2, R 1/2; 0: {A, A', B} -> P 2/3, R 1. The precision envelope is
    # 1 up to R 1/2 and 2/3 after: AP = 1/2 * 1 + 1/2 * 2/3 = 5/6 (without the duplicate: 1).
    dup = {"0--Parade/0_a": _pred((A, 3), ([11, 10, 40, 40], 2), (B, 1))}
    assert _ap(evaluate(dup, gt)) == pytest.approx(5 / 6, abs=1e-12)
    assert _ap(evaluate({"0--Parade/0_a": _pred((A, 3), (B, 1))}, gt)) == 1.0
    # The same duplicate scored last: (P, R) = (1, 1/2), (1, 1), (2/3, 1); the envelope is 1 up to
    # R 1, so the VOC AP does not see it.
    last = {"0--Parade/0_a": _pred((A, 3), (B, 2), ([11, 10, 40, 40], 1))}
    assert _ap(evaluate(last, gt)) == 1.0


def test_detection_on_ignored_face_is_neither_tp_nor_fp(tmp_path):
    # C is not in the keep list. Detections C 4, A 3, F (no face) 2, B 1 -> 1, 2/3, 1/3, 0.
    # thresholds > 2/3: {C} -> 0 proposals: precision 0/0 = NaN at recall 0 (never summed);
    # (1/3, 2/3]: {C, A} -> P 1, R 1/2; (0, 1/3]: + F -> P 1/2; 0: + B -> P 2/3, R 1.  AP = 5/6,
    # as without the C detection (A 3, F 2, B 1). Were C a false positive: 1/2 * 1/2 + 1/2 * 1/2 = 1/2.
    gt = _gt(tmp_path, [("0--Parade/0_a.jpg", [A, B, C])], keep=[np.array([1, 2])])
    with_c = {"0--Parade/0_a": _pred((C, 4), (A, 3), (F, 2), (B, 1))}
    without_c = {"0--Parade/0_a": _pred((A, 3), (F, 2), (B, 1))}
    assert _ap(evaluate(with_c, gt)) == pytest.approx(5 / 6, abs=1e-12)
    assert _ap(evaluate(without_c, gt)) == pytest.approx(5 / 6, abs=1e-12)
    pred_recall, proposal_list = image_eval(with_c["0--Parade/0_a"], gt.boxes[0], np.array([1, 1, 0]))
    np.testing.assert_array_equal(proposal_list, [-1, 1, 1, 1])
    np.testing.assert_array_equal(pred_recall, [0, 1, 1, 2])


def test_nan_precision_never_reaches_the_sum():
    # Leading 0/0 precisions sit at recall 0: the port keeps them NaN; the AP is finite and the same
    # as with any other value there.
    precision, recall = dataset_pr_curve(np.array([[0, 0], [0, 0], [1, 1], [3, 2]], float), 2)
    assert np.isnan(precision[:2]).all()
    assert voc_ap(recall, precision) == 0.5 * 1 + 0.5 * (2 / 3)
    assert voc_ap(recall, np.nan_to_num(precision)) == voc_ap(recall, precision)
    # no proposal at all (every detection on an ignored face): AP 0, as in the port
    precision, recall = dataset_pr_curve(np.zeros((4, 2)), 2)
    assert voc_ap(recall, precision) == 0.0


def test_image_without_predictions_still_counts_its_faces(tmp_path):
    gt = _gt(tmp_path, [("0--Parade/0_a.jpg", [A, B]), ("0--Parade/0_b.jpg", [C])])
    # 3 faces counted. A 2 -> 1, B 1 -> 0: thresholds > 0: P 1, R 1/3; 0: P 1, R 2/3.
    # AP = 2/3 * 1 (the envelope is 0 past the last recall).
    preds = {"0--Parade/0_a": _pred((A, 2), (B, 1)), "0--Parade/0_b": np.zeros((0, 5))}
    assert _ap(evaluate(preds, gt)) == pytest.approx(2 / 3, abs=1e-12)
    # with no file at all for 0_b: an error without subset, and 0_b not counted with it
    del preds["0--Parade/0_b"]
    with pytest.raises(ValueError, match=r"1 of 2 ground-truth images .* 0--Parade/0_b"):
        evaluate(preds, gt)
    assert _ap(evaluate(preds, gt, subset=True)) == 1.0


def test_false_positives_on_an_image_without_faces_are_not_counted(tmp_path):
    # The official code skips images without gt boxes: replicated, so the top-scored F is free.
    gt = _gt(tmp_path, [("0--Parade/0_a.jpg", [A, B]), ("0--Parade/0_b.jpg", np.zeros((0, 4)))])
    preds = {"0--Parade/0_a": _pred((A, 2), (B, 1)), "0--Parade/0_b": _pred((F, 9))}
    assert _ap(evaluate(preds, gt)) == 1.0


def test_iou_uses_the_plus_one_pixel_convention(tmp_path):
    # gt 2x2 at (0, 0) -> x1y1x2y2 [0 0 2 2], 3x3 = 9 px with +1. Detection shifted 1 px right:
    # intersection 2x3 = 6, union 9 + 9 - 6 = 12 -> IoU exactly 0.5 (a match, IoU >= 0.5);
    # without +1 it would be (1*2) / (4 + 4 - 2) = 1/3.
    small, shifted = [0, 0, 2, 2], [1, 0, 2, 2]
    iou = box_overlaps(np.array([[1, 0, 3, 2]], float), np.array([[0, 0, 2, 2]], float))
    assert iou[0, 0] == 0.5
    gt = _gt(tmp_path, [("0--Parade/0_a.jpg", [small, A])])
    # Matched: P 1 throughout, AP 1. Unmatched it would be P 0 then 1/2 at R 1/2: AP 1/4.
    assert _ap(evaluate({"0--Parade/0_a": _pred((shifted, 0.9), (A, 0.8))}, gt)) == 1.0
    further = [1.01, 0, 2, 2]  # IoU (1.99 * 3) / (18 - 5.97) < 0.5: a false positive
    assert _ap(evaluate({"0--Parade/0_a": _pred((further, 0.9), (A, 0.8))}, gt)) == 0.25


def test_ap_is_invariant_to_affine_rescaling_of_scores(tmp_path):
    rng = np.random.default_rng(1)
    gt = _gt(tmp_path, [(f"0--Parade/0_{i}.jpg", rng.integers(0, 400, (8, 4)) + [0, 0, 10, 10])
                        for i in range(6)], keep=[np.arange(1, 7)] * 6)
    preds = {n: np.c_[np.r_[b[:6] + rng.normal(0, 3, (6, 4)), rng.integers(0, 400, (4, 4))],
                      rng.random(10)] for n, b in zip(gt.names, gt.boxes)}
    base = evaluate(preds, gt)
    assert 0 < base["easy"] < 1
    for scale, shift in [(7.3, 0), (100, -3), (0.01, 5)]:
        scaled = {n: np.c_[p[:, :4], p[:, 4] * scale + shift] for n, p in preds.items()}
        assert evaluate(scaled, gt) == pytest.approx(base, abs=1e-12)


def test_equal_scores_make_one_operating_point(tmp_path):
    # max == min: the official code divides 0/0, drops every detection and scores 0; here every
    # detection is kept at every threshold: P = 1/2, R = 1/2 -> AP = 1/4.
    gt = _gt(tmp_path, [("0--Parade/0_a.jpg", [A, B])])
    assert _ap(evaluate({"0--Parade/0_a": _pred((A, 0.7), (F, 0.7))}, gt)) == 0.25


# --------------------------------------------------------------------------- vectorised == literal protocol


def _reference_aps(preds, gt, iou_thresh=0.5, thresh_num=1000):
    """The protocol as written, loop by loop (no vectorisation); all gt images have predictions."""
    lo = min(p[:, 4].min() for p in preds.values() if len(p))
    hi = max(p[:, 4].max() for p in preds.values() if len(p))
    norm = {}
    for n, p in preds.items():
        p = p[np.argsort(-p[:, 4], kind="stable")].copy()
        p[:, 4] = (p[:, 4] - lo) / (hi - lo)
        norm[n] = p
    aps = {}
    for setting in SETTINGS:
        pr_curve, count_face = np.zeros((thresh_num, 2)), 0
        for name, gt_boxes, keep in zip(gt.names, gt.boxes, gt.keep[setting]):
            pred = norm[name]
            count_face += len(keep)
            if len(gt_boxes) == 0 or len(pred) == 0:
                continue
            ignore = np.zeros(len(gt_boxes))
            ignore[keep - 1] = 1
            p, g = pred.copy(), gt_boxes.copy()
            p[:, 2:4] += p[:, 0:2]
            g[:, 2:4] += g[:, 0:2]
            recall_list, proposal_list = np.zeros(len(g)), np.ones(len(p))
            pred_recall = np.zeros(len(p))
            for h in range(len(p)):
                overlaps = np.zeros(len(g))
                for k in range(len(g)):
                    iw = min(p[h, 2], g[k, 2]) - max(p[h, 0], g[k, 0]) + 1
                    ih = min(p[h, 3], g[k, 3]) - max(p[h, 1], g[k, 1]) + 1
                    if iw > 0 and ih > 0:
                        ua = ((p[h, 2] - p[h, 0] + 1) * (p[h, 3] - p[h, 1] + 1)
                              + (g[k, 2] - g[k, 0] + 1) * (g[k, 3] - g[k, 1] + 1) - iw * ih)
                        overlaps[k] = iw * ih / ua
                if overlaps.max() >= iou_thresh:
                    gi = overlaps.argmax()
                    if ignore[gi] == 0:
                        recall_list[gi], proposal_list[h] = -1, -1
                    elif recall_list[gi] == 0:
                        recall_list[gi] = 1
                pred_recall[h] = (recall_list == 1).sum()
            for t in range(thresh_num):
                r = np.where(p[:, 4] >= 1 - (t + 1) / thresh_num)[0]
                if len(r):
                    pr_curve[t] += [(proposal_list[:r[-1] + 1] == 1).sum(), pred_recall[r[-1]]]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision, recall = pr_curve[:, 1] / pr_curve[:, 0], pr_curve[:, 1] / count_face
        mrec, mpre = np.r_[0.0, recall, 1.0], np.r_[0.0, precision, 0.0]
        for i in range(len(mpre) - 1, 0, -1):
            mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
        i = np.where(mrec[1:] != mrec[:-1])[0]
        aps[setting] = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    return aps


def test_vectorised_evaluation_matches_the_literal_protocol(tmp_path):
    rng = np.random.default_rng(3)
    images, keep = [], {s: [] for s in SETTINGS}
    for i in range(12):
        n = int(rng.integers(0, 10))
        boxes = np.c_[rng.integers(0, 200, (n, 2)), rng.integers(2, 40, (n, 2))].astype(float)
        if n > 2:
            boxes[1] = boxes[0]  # identical gt boxes: argmax ties go to the first
        images.append((f"{i % 3}--Ev/{i}.jpg", boxes))
        for s, frac in zip(SETTINGS, (0.3, 0.6, 0.9)):
            keep[s].append(np.flatnonzero(rng.random(n) < frac) + 1)
    write_ground_truth(tmp_path, images, keep)
    gt = load_ground_truth(tmp_path)
    preds = {}
    for name, b in zip(gt.names, gt.boxes):
        hits = b + rng.normal(0, 3, b.shape)  # some IoU above 0.5, some below
        dups = hits[: len(hits) // 3] + 1
        fps = np.c_[rng.uniform(0, 200, (3, 2)), rng.uniform(2, 40, (3, 2))]
        boxes = np.r_[hits, dups, fps][rng.permutation(len(hits) + len(dups) + 3)]
        scores = np.round(rng.random(len(boxes)), 1) * 3 - 1  # ties, and outside [0, 1]
        preds[name] = np.c_[boxes, scores]
    ours, reference = evaluate(preds, gt), _reference_aps(preds, gt)
    assert ours == reference  # bit for bit
    assert all(0 < v < 1 for v in ours.values())


# --------------------------------------------------------------------------- prediction files


def test_prediction_files_round_trip_sorted_and_exact(tmp_path):
    boxes = np.array([[1.5, 2, 3, 4, 0.25], [5, 6, 7, 8, 0.1 + 0.2], [9, 10, 11, 12, 0.25]])
    path = write_predictions(tmp_path, "0--Parade/0_a.jpg", boxes)
    assert path == tmp_path / "0--Parade/0_a.txt"
    lines = path.read_text().splitlines()
    assert lines[:3] == ["0_a.jpg", "3", "5 6 7 8 0.30000000000000004"]
    got = read_predictions(tmp_path)
    assert list(got) == ["0--Parade/0_a"]
    np.testing.assert_array_equal(got["0--Parade/0_a"], boxes[[1, 0, 2]])  # ties keep their order
    write_predictions(tmp_path, "0--Parade/0_b", np.zeros((0, 5)))
    assert read_predictions(tmp_path)["0--Parade/0_b"].shape == (0, 5)


@pytest.mark.parametrize("text, where", [
    ("0_a.jpg\n2\n1 2 3 4 0.5\n", ":4: count on line 2 says 2 detections, file has 1"),
    ("0_a.jpg\n0\n1 2 3 4 0.5\n", ":3: count on line 2 says 0 detections, file has 1"),
    ("0_a.jpg\ntwo\n", ":2: expected the number of detections"),
    ("0_a.jpg\n2\n1 2 3 4 0.5\n1 2 3 0.5\n", ":4: expected 5 finite numbers"),
    ("0_a.jpg\n1\n1 2 3 4 nan\n", ":3: expected 5 finite numbers"),
    ("0_a.jpg\n", ":2: file ends before the detection count"),
    ("0_b.jpg\n0\n", ":1: image name '0_b.jpg' does not match the file name"),
])
def test_malformed_prediction_files_name_file_and_line(tmp_path, text, where):
    path = tmp_path / "0--Parade/0_a.txt"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(ValueError, match=f"0_a.txt{where}"):
        read_prediction_file(path)


def test_unknown_prediction_images_are_an_error(tmp_path):
    gt = _gt(tmp_path, [("0--Parade/0_a.jpg", [A])])
    with pytest.raises(ValueError, match="1 prediction file.* no ground-truth image, e.g. 0--Parade/0_zz"):
        evaluate({"0--Parade/0_a": _pred((A, 1)), "0--Parade/0_zz": _pred((A, 1))}, gt)


# --------------------------------------------------------------------------- the real mini val set


@pytest.fixture(scope="module")
def mini():
    anns = read_annotations(MINI / "wider_face_split/wider_face_val_bbx_gt.txt")
    return load_ground_truth(MINI / "ground_truth"), anns


def _perfect(anns, score=None, rng=None):
    return {a.name[:-4]: np.c_[a.boxes, np.ones(len(a.boxes)) if score is None else rng.random(len(a.boxes))]
            for a in anns}


@needs_mini
def test_real_mini_set_perfect_and_degraded(mini):
    gt, anns = mini
    assert len(gt.names) == 3226 and len(anns) == 135
    t0 = time.perf_counter()
    # The 135 images' gt boxes, all scored 1 (equal scores: every box kept at every threshold).
    assert evaluate(_perfect(anns), gt, subset=True) == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    assert time.perf_counter() - t0 < 5
    rng = np.random.default_rng(0)
    assert evaluate(_perfect(anns, "random", rng), gt, subset=True) == {"easy": 1.0, "medium": 1.0,
                                                                         "hard": 1.0}
    degraded = {}
    for name, p in _perfect(anns, "random", rng).items():
        p = p[rng.random(len(p)) < 0.7]  # drop 30 %
        p[:, :4] += rng.normal(0, 0.15, (len(p), 4)) * p[:, [2, 3, 2, 3]].clip(1)  # jitter ~15 % of size
        degraded[name] = p
    aps = evaluate(degraded, gt, subset=True)
    assert all(0 < aps[s] < 1 for s in SETTINGS), aps
    with pytest.raises(ValueError, match=r"3091 of 3226 ground-truth images have no prediction file, e\.g\. "
                                         r"0--Parade/0_Parade_marchingband_1_"):
        evaluate(_perfect(anns), gt)


@needs_mini
def test_real_mini_set_cli(mini, tmp_path, capsys):
    gt, anns = mini
    for name, p in _perfect(anns).items():
        write_predictions(tmp_path / "pred", name, p)
    assert main(["--gt", str(MINI / "ground_truth"), "--pred", str(tmp_path / "pred"), "--subset"]) == \
        {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    assert json.loads(capsys.readouterr().out) == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    with pytest.raises(SystemExit, match="3091 of 3226 ground-truth images have no prediction file"):
        main(["--gt", str(MINI / "ground_truth"), "--pred", str(tmp_path / "pred")])
    with pytest.raises(SystemExit, match="prediction folder not found"):
        main(["--gt", str(MINI / "ground_truth"), "--pred", str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="missing ground-truth file"):
        main(["--gt", str(tmp_path), "--pred", str(tmp_path / "pred")])
    ann_file = str(MINI / "wider_face_split/wider_face_val_bbx_gt.txt")
    assert main(["--annotations", ann_file, "--pred", str(tmp_path / "pred")]) == {"all": 1.0, "min50": 1.0}
    assert json.loads(capsys.readouterr().out) == {"all": 1.0, "min50": 1.0}


@needs_mini
def test_real_mini_annotations(mini):
    _, anns = mini
    assert evaluate_annotations(_perfect(anns), anns) == {"all": 1.0, "min50": 1.0}
    # Keep only detections of faces under 50 px: every one is on an ignored face for min50, so there
    # is no proposal at all and min50 AP is 0; "all" loses the big faces' recall.
    small = {a.name[:-4]: np.c_[a.boxes, np.ones(len(a.boxes))][(a.boxes[:, 2] < 50) | (a.boxes[:, 3] < 50)]
             for a in anns}
    aps = evaluate_annotations(small, anns)
    assert aps["min50"] == 0.0
    assert 0 < aps["all"] < 1
