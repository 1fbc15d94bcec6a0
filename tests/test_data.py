"""WIDER FACE loading (real mini val set, tiny fake roots with broken files) and augmentation."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detection.annotations import ImageAnnotation, read_annotations, write_annotations
from detection.augment import (
    PAD_VALUE,
    TrainTransform,
    hflip,
    photometric_distort,
    random_square_crop,
    resize_for_eval,
)
from detection.data import (
    DataConfig,
    WiderFaceDataset,
    build_loader,
    collate,
    normalize,
    val_images,
)
from core.config import from_dict

from conftest import MINI, needs_mini  # noqa: E402  (shared test data location)


def _jpeg(rng: np.random.Generator, w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _fake_root(tmp_path: Path, n: int = 4, split: str = "train", size=(96, 64)) -> Path:
    """A tiny WIDER root: n random images with 1..3 faces each (one invalid, one zero-size row)."""
    rng = np.random.default_rng(0)
    anns = []
    for i in range(n):
        name = f"0--Fake/0_Fake_{i}.jpg"
        path = tmp_path / f"WIDER_{split}" / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_jpeg(rng, *size))
        k = 1 + i % 3
        boxes = np.array([[4 + 20 * j, 8, 16, 20] for j in range(k)], np.float32)
        attrs = np.zeros((k, 6), np.int64)
        anns.append(ImageAnnotation(name, boxes, attrs))
    anns[1].attributes[1, 3] = 1  # invalid
    anns[2].boxes[2, 2] = 0  # zero width
    write_annotations(tmp_path / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt", anns)
    return tmp_path


# ------------------------------------------------------------------------------------ real mini set

@needs_mini
def test_mini_set_counts():
    ds = WiderFaceDataset(MINI, "val")
    anns = read_annotations(MINI / "wider_face_split/wider_face_val_bbx_gt.txt")
    invalid = sum(int(a.invalid.sum()) for a in anns)
    degenerate = sum(int(((a.boxes[:, 2] < 1) | (a.boxes[:, 3] < 1))[~a.invalid].sum()) for a in anns)
    assert len(ds) == 135
    assert ds.n_faces == 3733
    assert (invalid, degenerate) == (36, 2)
    assert ds.n_trainable == 3733 - 36 - 2 == 3695
    image, boxes = ds[0]  # no transform: original pixels, trainable boxes x1y1x2y2
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    np.testing.assert_array_equal(boxes, anns[0].trainable())


@needs_mini
def test_mini_loader_batches():
    cfg = DataConfig(root=str(MINI), batch_size=4, workers=0)
    loader = build_loader(cfg, "val", train=True, seed=0)
    counts = []
    for step, (images, targets) in enumerate(loader):
        assert images.shape == (4, 3, 320, 320) and images.dtype == torch.float32
        assert len(targets) == 4 and -1 <= images.min() and images.max() < 1
        for t in targets:
            assert t.dtype == torch.float32 and t.shape[1] == 4
            assert (t[:, 2:] - t[:, :2] >= cfg.min_face).all()
            assert t.min() >= 0 and t.max() <= 320
            counts.append(len(t))
        if step == 2:
            break
    assert len(set(counts)) > 1  # box counts vary per image
    images, targets = next(iter(build_loader(cfg, "val", train=False, seed=0)))  # eval resize
    assert images.shape == (4, 3, 320, 320) and all(t.max() <= 320 for t in targets)


@needs_mini
def test_val_images_and_normalize():
    items = list(val_images(DataConfig(root=str(MINI)), limit=3))
    anns = read_annotations(MINI / "wider_face_split/wider_face_val_bbx_gt.txt")
    assert [n for n, _ in items] == [a.name for a in anns[:3]]
    name, image = items[0]
    assert image.dtype == np.uint8 and image.shape[2] == 3
    x = normalize(image)
    assert x.shape == (3, *image.shape[:2])
    batch, _ = collate([(image, np.zeros((0, 4), np.float32))])
    torch.testing.assert_close(batch[0], x)


# ------------------------------------------------------------------------------ errors and bad files

def test_malformed_annotation_names_file_and_line(tmp_path):
    root = _fake_root(tmp_path)
    ann = root / "wider_face_split/wider_face_train_bbx_gt.txt"
    lines = ann.read_text().splitlines()
    lines[2] = "4 8 16 oops 0 0 0 0 0 0"
    ann.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"wider_face_train_bbx_gt\.txt:3"):
        WiderFaceDataset(root, "train")


def test_missing_images_counted_and_named(tmp_path):
    root = _fake_root(tmp_path, n=5)
    for i in (1, 3, 4):
        (root / f"WIDER_train/images/0--Fake/0_Fake_{i}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"3 of 5 annotated images are missing") as err:
        WiderFaceDataset(root, "train")
    assert "0--Fake/0_Fake_1.jpg" in str(err.value) and "0_Fake_3.jpg" in str(err.value)


def test_empty_dataset_and_bad_layout(tmp_path):
    root = _fake_root(tmp_path)
    (root / "wider_face_split/wider_face_train_bbx_gt.txt").write_text("")
    with pytest.raises(ValueError, match="empty dataset"):
        WiderFaceDataset(root, "train")
    with pytest.raises(FileNotFoundError, match="not a WIDER FACE root"):
        WiderFaceDataset(root, "val")
    with pytest.raises(ValueError, match="split"):
        WiderFaceDataset(root, "test")


def _corrupt(root: Path) -> None:
    images = root / "WIDER_train/images/0--Fake"
    data = (images / "0_Fake_1.jpg").read_bytes()
    (images / "0_Fake_1.jpg").write_bytes(data[: len(data) // 2])  # truncated JPEG
    (images / "0_Fake_3.jpg").write_bytes(b"not an image at all")  # garbage


def test_corrupt_images_skipped_and_counted(tmp_path):
    root = _fake_root(tmp_path, n=6)
    _corrupt(root)
    cfg = DataConfig(root=str(root), batch_size=4, workers=0, train_size=64)
    loader = build_loader(cfg, "train", train=True, seed=0)
    with pytest.warns(RuntimeWarning, match="skipping unreadable image"):
        seen = sum(len(images) for images, _ in loader)
    assert seen == 4 and loader.dataset.n_skipped == 2
    assert collate([None, None])[0].shape[0] == 0  # an all-bad batch is empty, not an error


@pytest.mark.slow
def test_workers_count_skips_and_match_single_process(tmp_path):
    root = _fake_root(tmp_path, n=8)
    _corrupt(root)
    cfg = DataConfig(root=str(root), batch_size=3, workers=0, train_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = [(x.clone(), [t.clone() for t in ts]) for x, ts in build_loader(cfg, "train", True, seed=5)]
        loader = build_loader(DataConfig(root=str(root), batch_size=3, workers=2, train_size=64),
                              "train", True, seed=5)
        multi = [(x.clone(), [t.clone() for t in ts]) for x, ts in loader]
        second_epoch = [x for x, _ in loader]  # persistent workers, new order
    assert loader.dataset.n_skipped == 4  # 2 bad files x 2 epochs, counted in worker processes
    assert len(single) == len(multi)
    for (xa, ta), (xb, tb) in zip(single, multi):  # same samples and augmentation, any worker count
        torch.testing.assert_close(xa, xb)
        assert all(torch.equal(a, b) for a, b in zip(ta, tb))
    assert not all(torch.equal(a, b) for a, (b, _) in zip(second_epoch, multi))


def test_loader_deterministic_by_seed(tmp_path):
    root = _fake_root(tmp_path, n=6, size=(120, 90))
    cfg = DataConfig(root=str(root), batch_size=6, workers=0, train_size=64)
    a, ta = next(iter(build_loader(cfg, "train", True, seed=1)))
    b, tb = next(iter(build_loader(cfg, "train", True, seed=1)))
    c, _ = next(iter(build_loader(cfg, "train", True, seed=2)))
    assert torch.equal(a, b) and all(torch.equal(x, y) for x, y in zip(ta, tb))
    assert not torch.equal(a, c)


def test_resume_mid_epoch_gives_the_rest_of_that_epoch(tmp_path):
    root = _fake_root(tmp_path, n=7, size=(120, 90))
    cfg = DataConfig(root=str(root), batch_size=2, workers=0, train_size=64)
    loader = build_loader(cfg, "train", True, seed=3)
    next(iter(loader))  # epoch 0
    full = [x for x, _ in loader]  # epoch 1, uninterrupted
    resumed = build_loader(cfg, "train", True, seed=3)
    resumed.sampler.epoch, resumed.sampler.start = 1, 2 * cfg.batch_size
    rest = [x for x, _ in resumed]
    assert len(rest) == len(full) - 2 and all(torch.equal(a, b) for a, b in zip(rest, full[2:]))
    assert resumed.sampler.epoch == 2 and resumed.sampler.start == 0


def test_config_is_strict():
    cfg = from_dict(DataConfig, {"root": None, "crop_scales": [0.5, 1.0], "batch_size": 2})
    assert cfg.crop_scales == (0.5, 1.0) and cfg.root is None
    with pytest.raises(ValueError, match="unknown key 'batchsize'"):
        from_dict(DataConfig, {"batchsize": 2})
    with pytest.raises(ValueError, match="crop_scales"):
        DataConfig(crop_scales=(0.0, 1.0))


# ----------------------------------------------------------------------------------------- augment

def _bright_box(image: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(image.max(axis=2) > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _white_box_image(h=90, w=120, box=(30, 20, 70, 60)) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image, np.array([box], np.float32)


def test_flip_keeps_box_on_the_pixels():
    image, boxes = _white_box_image(box=(10, 20, 45, 60))
    flipped, fboxes = hflip(image, boxes)
    np.testing.assert_array_equal(_bright_box(flipped), fboxes[0])
    np.testing.assert_array_equal(fboxes[0], [120 - 45, 20, 120 - 10, 60])


def test_train_transform_boxes_follow_the_image():
    image, boxes = _white_box_image()
    t = TrainTransform(size=64, crop_scales=(0.5, 1.0), photometric_prob=0.0, min_face=1)
    for seed in range(20):
        out, obox = t(image, boxes, np.random.default_rng(seed))
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8
        assert len(obox) == 1  # the only face is always kept (retry / fallback)
        np.testing.assert_allclose(_bright_box(out), obox[0], atol=1.5)  # resampling blurs ~1 px
    # determinism
    a = t(image, boxes, np.random.default_rng(7))
    b = t(image, boxes, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_crop_keeps_faces_whose_centre_is_inside():
    h, w = 120, 200
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx, yy, np.zeros_like(xx)], axis=2).astype(np.uint8)  # pixel = its coordinates
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, [w - 30, h - 30], (40, 2))
    boxes = np.hstack([xy, xy + rng.uniform(4, 30, (40, 2))]).astype(np.float32)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    for seed in range(30):
        crop, out = random_square_crop(image, boxes, np.random.default_rng(seed), (0.2, 0.6))
        x0, y0, side = int(crop[0, 0, 0]), int(crop[0, 0, 1]), crop.shape[0]
        inside = ((centres >= [x0, y0]) & (centres < [x0 + side, y0 + side])).all(axis=1)
        expected = np.clip(boxes[inside] - [x0, y0, x0, y0], 0, side)
        np.testing.assert_allclose(out, expected, atol=1e-4)
        assert len(out) >= 1


def test_small_faces_dropped():
    image = np.zeros((100, 100, 3), np.uint8)
    boxes = np.array([[10, 10, 13, 30], [50, 50, 60, 60], [70, 10, 90, 13.5]], np.float32)
    t = TrainTransform(size=100, crop_scales=(1.0, 1.0), flip_prob=0, photometric_prob=0, min_face=4)
    _, out = t(image, boxes, np.random.default_rng(0))
    np.testing.assert_allclose(out, boxes[1:2])
    t2 = TrainTransform(size=50, crop_scales=(1.0, 1.0), flip_prob=0, photometric_prob=0, min_face=4)
    _, out2 = t2(image, boxes, np.random.default_rng(0))
    np.testing.assert_allclose(out2, boxes[1:2] / 2)  # after the resize 10 px -> 5 px: kept


def test_photometric_and_eval_resize():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    assert np.array_equal(photometric_distort(image, rng, p=0.0), image)
    out = photometric_distort(image, np.random.default_rng(1), p=1.0)
    assert out.shape == image.shape and out.dtype == np.uint8 and not np.array_equal(out, image)
    img = np.full((100, 200, 3), 9, np.uint8)
    sq, scale = resize_for_eval(img, 320)
    assert sq.shape == (320, 320, 3) and scale == 1.6
    assert (sq[:160] == 9).all() and (sq[160:] == PAD_VALUE).all()
    mult, scale = resize_for_eval(np.zeros((70, 100, 3), np.uint8), 320, pad="multiple")
    assert mult.shape == (224, 320, 3) and scale == 3.2
