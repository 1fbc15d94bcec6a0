"""The face detector: anchors vs head order, matching/loss, NMS, postprocess, extract, ONNX export."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from detection.anchors import box_iou, decode, encode, feature_size, make_anchors
from detection.config import DetectorConfig
from detection.loss import DetectionLoss
from detection.model import Detector, build_detector, build_supernet_detector
from detection.neck import FPNHead
from detection.postprocess import nms, postprocess, to_wider
from supernet.blocks import Backbone
from core.experiment import Experiment

SIZES = [(64, 64), (96, 96), (321, 257), (33, 95)]


@pytest.fixture(scope="module")
def exp():
    return Experiment.from_yaml("experiments/tiny.yaml")


@pytest.fixture(scope="module")
def cfg(exp):
    return exp.section("detector", DetectorConfig)


@pytest.fixture(scope="module")
def arch(exp):
    return exp.space.smallest()


# -- anchors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
def test_feature_size_matches_backbone(exp, cfg, size):
    arch = exp.space.largest()
    backbone = Backbone(arch, exp.space.tap_blocks(arch, cfg.feature_strides)).eval()
    with torch.no_grad():
        feats = backbone(torch.zeros(1, 3, *size))
    assert [tuple(f.shape[-2:]) for f in feats] == [
        (feature_size(size[0], s), feature_size(size[1], s)) for s in cfg.feature_strides]


@pytest.mark.parametrize("size", SIZES)
def test_anchor_count_matches_detector(exp, cfg, arch, size):
    det = build_detector(exp.space, arch, cfg).eval()
    with torch.no_grad():
        cls, box = det(torch.zeros(2, 3, *size))
    n = det.anchors(size).shape[0]
    assert cls.shape == (2, n) and box.shape == (2, n, 4)


@pytest.mark.parametrize("size", SIZES)
def test_anchor_order_matches_head(cfg, size):
    """Feed the real FPNHead coordinate maps so its box outputs spell out (cx, cy, anchor index)."""
    head = FPNHead(cfg.neck_channels, len(cfg.feature_strides), cfg.n_anchors)
    anchors = make_anchors(cfg, size)
    shapes = [(feature_size(size[0], s), feature_size(size[1], s)) for s in cfg.feature_strides]
    counts = [h * w * cfg.n_anchors for h, w in shapes]
    starts = np.cumsum([0] + counts)
    for level, stride in enumerate(cfg.feature_strides):
        head.smooth[level] = nn.Identity()
        with torch.no_grad():
            w = torch.zeros(cfg.n_anchors * 4, cfg.neck_channels, 1, 1)
            for a in range(cfg.n_anchors):
                w[4 * a, 0] = w[4 * a + 1, 1] = 1  # cx, cy
                w[4 * a + 2, 2] = a  # anchor index
            head.box[level].weight.copy_(w)
            head.box[level].bias.zero_()
        feats = [torch.zeros(1, cfg.neck_channels, h, w) for h, w in shapes]
        h, w = shapes[level]  # coarser levels are zero, so the merged map at `level` is this one
        feats[level][0, 0] = ((torch.arange(w) + 0.5) * stride)[None, :].expand(h, w)
        feats[level][0, 1] = ((torch.arange(h) + 0.5) * stride)[:, None].expand(h, w)
        feats[level][0, 2] = 1
        with torch.no_grad():
            _, box = head(feats)
        out = box[0, starts[level]:starts[level + 1]]
        anc = anchors[starts[level]:starts[level + 1]]
        torch.testing.assert_close(out[:, :2], (anc[:, :2] + anc[:, 2:]) / 2)
        sizes = torch.tensor(cfg.anchor_sizes[level], dtype=torch.float32)
        torch.testing.assert_close(anc[:, 2] - anc[:, 0], sizes[out[:, 2].round().long()])
    assert anchors.shape[0] == starts[-1]


def test_anchor_values(cfg):
    anchors = make_anchors(cfg, (64, 64))
    s = cfg.feature_strides[0]
    c = s / 2  # first location: stride-8 cell (0, 0), centred at (4, 4)
    first = torch.tensor([[c - a / 2, c - a / 2, c + a / 2, c + a / 2] for a in cfg.anchor_sizes[0]])
    torch.testing.assert_close(anchors[:cfg.n_anchors], first)
    # the next location along x (same y) comes right after, before the next row
    torch.testing.assert_close(anchors[cfg.n_anchors], first[0] + torch.tensor([s, 0.0, s, 0]))


def test_encode_decode_roundtrip():
    g = torch.Generator().manual_seed(0)
    anchors = torch.rand(100, 2, generator=g) * 200
    anchors = torch.cat([anchors, anchors + 8 + torch.rand(100, 2, generator=g) * 100], 1)
    boxes = torch.rand(100, 2, generator=g) * 200
    boxes = torch.cat([boxes, boxes + 4 + torch.rand(100, 2, generator=g) * 150], 1)
    torch.testing.assert_close(decode(encode(boxes, anchors), anchors), boxes, atol=1e-3, rtol=1e-5)
    # decode broadcasts over a batch of deltas
    assert decode(torch.zeros(3, 100, 4), anchors).shape == (3, 100, 4)
    torch.testing.assert_close(decode(torch.zeros(3, 100, 4), anchors)[1], anchors)


# -- loss ---------------------------------------------------------------------------------------

def test_gt_equal_to_anchor_is_positive(cfg):
    anchors = make_anchors(cfg, (96, 96))
    loss_fn = DetectionLoss(cfg)
    for idx in (0, 37, anchors.shape[0] - 1):
        labels, matched = loss_fn.match(anchors, anchors[idx:idx + 1].clone())
        assert labels[idx] == 1
        torch.testing.assert_close(matched[idx], anchors[idx])


def test_match_thresholds(cfg):
    anchors = make_anchors(cfg, (96, 96))
    gt = torch.tensor([[10.0, 12, 30, 35], [40, 40, 90, 88], [3, 60, 5, 62]])  # the last one is tiny
    labels, _ = DetectionLoss(cfg).match(anchors, gt)
    iou = box_iou(anchors, gt)
    best = iou.max(1).values
    forced = torch.zeros_like(labels, dtype=torch.bool)
    forced[iou.argmax(0)] = True
    assert (labels[forced] == 1).all()
    free = ~forced
    assert (labels[free & (best >= 0.35)] == 1).all()
    assert (labels[free & (best < 0.2)] == 0).all()
    assert (labels[free & (best >= 0.2) & (best < 0.35)] == -1).all()
    assert iou[:, 2].max() < 0.2  # the tiny face still got its best anchor
    assert labels[iou[:, 2].argmax()] == 1


def test_perfect_regression_gives_zero_box_loss(cfg):
    anchors = make_anchors(cfg, (64, 64))
    targets = [torch.tensor([[8.0, 8, 24, 26], [30, 20, 62, 60]]), torch.tensor([[5.0, 30, 40, 61]])]
    loss_fn = DetectionLoss(cfg)
    deltas = torch.stack([encode(loss_fn.match(anchors, t)[1], anchors) for t in targets])
    out = loss_fn(torch.zeros(2, anchors.shape[0]), deltas, anchors, targets)
    assert out["num_pos"] >= 3
    assert out["box"].abs() < 1e-6
    assert out["cls"] > 0
    wrong = loss_fn(torch.zeros(2, anchors.shape[0]), deltas + 0.5, anchors, targets)
    assert wrong["box"] > 0.1


def test_in_place_distillation_term(cfg):
    """A student equal to its teacher adds nothing; one that disagrees pays on cls and boxes."""
    anchors = make_anchors(cfg, (64, 64))
    targets = [torch.tensor([[8.0, 8, 24, 26]])]
    loss_fn = DetectionLoss(cfg)
    g = torch.Generator().manual_seed(0)
    cls, box = torch.randn(1, anchors.shape[0], generator=g), torch.randn(1, anchors.shape[0], 4, generator=g)
    plain = loss_fn(cls, box, anchors, targets)["loss"]
    same = loss_fn(cls, box, anchors, targets, teacher=(cls, box), distill=1.0)["loss"]
    assert same.item() == pytest.approx(plain.item(), abs=1e-6)
    off_cls = loss_fn(cls, box, anchors, targets, teacher=(cls + 3, box), distill=1.0)["loss"]
    off_box = loss_fn(cls, box, anchors, targets, teacher=(cls, box + 1), distill=1.0)["loss"]
    assert off_cls > plain + 0.1 and off_box > plain + 0.1
    half = loss_fn(cls, box, anchors, targets, teacher=(cls, box + 1), distill=0.5)["loss"]
    assert (half - plain).item() == pytest.approx((off_box - plain).item() / 2, rel=1e-5)


def test_head_starts_at_the_face_prior():
    head = FPNHead(channels=16, n_levels=3, n_anchors=2)
    cls, _ = head([torch.randn(2, 16, s, s) for s in (8, 4, 2)])
    assert torch.sigmoid(cls).mean().item() == pytest.approx(0.01, rel=0.05)


def test_focal_loss_value(cfg):
    """Compare with a per-anchor reference: alpha_t (1 - p_t)^gamma (-log p_t), over non-ignored."""
    anchors = make_anchors(cfg, (64, 64))
    targets = [torch.tensor([[8.0, 8, 24, 26]])]
    loss_fn = DetectionLoss(cfg)
    logits = torch.randn(1, anchors.shape[0], generator=torch.Generator().manual_seed(1))
    out = loss_fn(logits, torch.zeros(1, anchors.shape[0], 4), anchors, targets)
    labels, _ = loss_fn.match(anchors, targets[0])
    p = torch.sigmoid(logits[0]).double()
    ref = 0.0
    for lab, pi in zip(labels.tolist(), p.tolist()):
        if lab == 1:
            ref += 0.25 * (1 - pi) ** 2 * -np.log(pi)
        elif lab == 0:
            ref += 0.75 * pi ** 2 * -np.log(1 - pi)
    assert out["cls"].item() == pytest.approx(ref / int((labels == 1).sum()), rel=1e-4)


def test_images_without_faces_give_finite_loss(cfg):
    anchors = make_anchors(cfg, (64, 64))
    cls = torch.randn(3, anchors.shape[0], requires_grad=True)
    box = torch.randn(3, anchors.shape[0], 4, requires_grad=True)
    loss_fn = DetectionLoss(cfg)
    empty = [torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros((0,))]
    out = loss_fn(cls, box, anchors, empty)
    assert out["num_pos"] == 0 and out["box"] == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert torch.isfinite(cls.grad).all() and cls.grad.abs().sum() > 0
    # mixed batch, and a degenerate (zero-width) gt box is dropped instead of giving inf
    out = loss_fn(cls, box, anchors, [torch.zeros(0, 4), torch.tensor([[10.0, 10, 30, 30]]),
                                      torch.tensor([[5.0, 5, 5, 20]])])
    assert out["num_pos"] >= 1 and torch.isfinite(out["loss"])


def _squares_batch():
    """Two 64x64 images with bright rectangles where the faces are (and their boxes)."""
    targets = [torch.tensor([[8.0, 8, 26, 28], [34, 30, 62, 60]]), torch.tensor([[20.0, 14, 50, 46]])]
    images = torch.full((2, 3, 64, 64), -1.0)
    for img, boxes in zip(images, targets):
        for x1, y1, x2, y2 in boxes.long().tolist():
            img[:, y1:y2, x1:x2] = 1.0
    return images + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0)), targets


@pytest.mark.slow  # ~1 s alone, several seconds on a shared CPU
def test_overfit_one_batch(exp, cfg, arch):
    """40 steps on one batch: the loss falls and postprocess finds every face among its top 5.

    Detections come from train-mode outputs: with a batch of 2 and 2x2 maps at stride 32, BN running
    stats after 40 steps are far from the batch stats, which would test BN, not the detector.
    """
    torch.manual_seed(0)
    det = build_detector(exp.space, arch, cfg)
    images, targets = _squares_batch()
    loss_fn = DetectionLoss(cfg)
    anchors = det.anchors((64, 64))
    opt = torch.optim.Adam(det.parameters(), lr=2e-2)
    losses = []
    for _ in range(40):
        out = loss_fn(*det(images), anchors, targets)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.1 * losses[0], losses
    with torch.no_grad():
        dets = postprocess(*det(images), anchors, cfg)
    for d, gt in zip(dets, targets):
        assert d.shape[0] > 0
        assert (box_iou(gt, d[:5, :4]).max(1).values > 0.5).all(), (gt, d[:5])


# -- NMS and postprocess ------------------------------------------------------------------------

def _nms_reference(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Textbook greedy NMS in numpy float32: take the best remaining box, drop what overlaps it."""
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        iw = np.maximum(np.float32(0), np.minimum(boxes[i, 2], boxes[rest, 2])
                        - np.maximum(boxes[i, 0], boxes[rest, 0]))
        ih = np.maximum(np.float32(0), np.minimum(boxes[i, 3], boxes[rest, 3])
                        - np.maximum(boxes[i, 1], boxes[rest, 1]))
        inter = iw * ih
        union = area[i] + area[rest] - inter
        order = rest[~((union > 0) & (inter / union > iou))]
    return keep


@pytest.mark.parametrize("seed", range(4))
def test_nms_equals_greedy_reference(seed):
    g = torch.Generator().manual_seed(seed)
    n = 700  # more than one internal block
    xy = torch.rand(n, 2, generator=g) * 120
    boxes = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 40], 1)
    scores = torch.rand(n, generator=g)
    scores[::5] = scores[1::5][: len(scores[::5])]  # ties
    for iou in (0.3, 0.5):
        keep = nms(boxes, scores, iou)
        want = _nms_reference(boxes.numpy(), scores.numpy(), iou)
        assert keep.tolist() == want
        assert nms(boxes, scores, iou, max_keep=40).tolist() == want[:40]


def test_nms_edge_cases():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.4).shape == (0,)
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]])
    assert nms(boxes, torch.tensor([0.5, 0.9, 0.8, 0.1]), 0.4).tolist() == [1, 3]


def test_postprocess_threshold_and_max_detections(cfg):
    anchors = make_anchors(cfg, (96, 96))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, anchors.shape[0], generator=g) * 3
    deltas = torch.randn(2, anchors.shape[0], 4, generator=g) * 0.5
    small = dataclasses.replace(cfg, score_threshold=0.6, max_detections=7)
    dets = postprocess(logits, deltas, anchors, small)
    assert len(dets) == 2
    for d, lg in zip(dets, logits):
        assert d.shape == (7, 5)
        assert (d[:, 4] > 0.6).all()
        assert (d[:-1, 4] >= d[1:, 4]).all()
        assert d[0, 4] == torch.sigmoid(lg).max()  # the best box always survives NMS
    loose = dataclasses.replace(cfg, score_threshold=0.99, max_detections=1000)
    for d, lg in zip(postprocess(logits, deltas, anchors, loose), logits):
        assert 0 < d.shape[0] <= int((torch.sigmoid(lg) > 0.99).sum())
    none = postprocess(torch.full((1, anchors.shape[0]), -20.0), deltas[:1], anchors, cfg)
    assert none[0].shape == (0, 5)
    clipped = postprocess(logits, deltas * 10, anchors, cfg, image_size=(96, 80))[0]
    assert (clipped[:, [0, 2]] <= 80).all() and (clipped[:, :4] >= 0).all()


def test_to_wider():
    dets = torch.tensor([[10.0, 20, 30, 60, 0.9], [0, 0, 4, 2, 0.5]])
    np.testing.assert_allclose(to_wider(dets, 0.5), [[20, 40, 40, 80, 0.9], [0, 0, 8, 4, 0.5]])
    np.testing.assert_allclose(to_wider(dets, (0.5, 2.0))[0], [5, 40, 10, 80, 0.9])
    assert to_wider(torch.zeros(0, 5), 2.0).shape == (0, 5)


# -- supernet extract and export ----------------------------------------------------------------

def _randomize_norm_stats(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(getattr(m, "running_mean", None), torch.Tensor):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 1:
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def test_extract_equals_supernet_detector(exp, cfg):
    torch.manual_seed(0)
    det = build_supernet_detector(exp.space, cfg)
    with torch.no_grad():
        _randomize_norm_stats(det, 0)
    det.eval()
    x = torch.randn(2, 3, 96, 80)
    rng = np.random.default_rng(0)
    for arch in [exp.space.smallest(), exp.space.largest(), exp.space.sample(rng), exp.space.sample(rng)]:
        det.set_active(arch)
        sub = det.extract(arch)
        assert isinstance(sub, Detector) and not sub.elastic and not sub.training
        with torch.no_grad():
            want, got = det(x), sub(x)
        for w, o in zip(want, got):
            assert w.shape == o.shape
            assert (w - o).abs().max() < 1e-5
        assert sub.predict(x)[0].shape[1] == 5
        # same modules as a freshly built standalone detector, so retraining can load these weights
        build_detector(exp.space, arch, cfg).load_state_dict(sub.state_dict())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter (dynamo=False)
def test_onnx_export_matches_torch(exp, cfg, arch, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    det = build_detector(exp.space, arch, cfg)
    with torch.no_grad():
        _randomize_norm_stats(det, 1)
    det.eval()
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / "det.onnx"
    torch.onnx.export(det, (x,), str(path), input_names=["images"], output_names=["cls", "box"],
                      dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cls, box = sess.run(None, {"images": x.numpy()})
    with torch.no_grad():
        want_cls, want_box = det(x)
    np.testing.assert_allclose(cls, want_cls.numpy(), atol=1e-4)
    np.testing.assert_allclose(box, want_box.numpy(), atol=1e-4)
