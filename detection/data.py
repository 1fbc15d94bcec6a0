"""WIDER FACE data: the `data:` config section, the dataset, batching and the loader.

Reads the official layout (the generated dataset of ``detection.synth`` uses the same one)::

    <root>/WIDER_{train,val}/images/<event>/<image>.jpg
    <root>/wider_face_split/wider_face_{train,val}_bbx_gt.txt

    >>> cfg = DataConfig(root="/data/widerface", batch_size=8)          # doctest: +SKIP
    >>> images, targets = next(iter(build_loader(cfg, "train", train=True, seed=0)))  # doctest: +SKIP
    >>> images.shape, targets[0].shape                                    # doctest: +SKIP
    (torch.Size([8, 3, 320, 320]), torch.Size([12, 4]))

Targets are x1 y1 x2 y2 in network-input pixels. Training uses only ``ImageAnnotation.trainable``
faces (invalid flag and zero-size rows dropped). An image that cannot be decoded is skipped with a
warning and counted (``WiderFaceDataset.n_skipped``), never a crash mid-epoch.

Normalisation (SCRFD's): ``(pixel - 127.5) / 128`` on RGB, the same for every channel, so inputs
lie in [-1, 1) and the padding value 128 maps to ~0. Use ``normalize`` at inference too.
"""

from __future__ import annotations

import multiprocessing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from detection import synth
from detection.annotations import ImageAnnotation, read_annotations
from detection.augment import PAD_VALUE, EvalTransform, TrainTransform

MEAN, STD = 127.5, 128.0  # RGB pixel normalisation, all channels
SPLITS = ("train", "val")

Transform = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class DataConfig:
    root: str | None = None  # WIDER FACE root (official layout); None = the generated dataset
    synth_seed: int = 0  # generated dataset: content seed (part of its cache key)
    synth_train_images: int = synth.DEFAULT_TRAIN_IMAGES  # generated dataset: WIDER_train size
    synth_val_images: int = synth.DEFAULT_VAL_IMAGES  # generated dataset: WIDER_val size
    synth_image_size: int = synth.DEFAULT_IMAGE_SIZE  # generated dataset: square image side, px
    train_size: int = 320  # side of the square training crop fed to the net; eval long side, px
    batch_size: int = 16
    workers: int = 2  # DataLoader worker processes (0 = load in the main process)
    min_face: float = 4.0  # faces with a side under this many px after resize are dropped (train)
    crop_scales: tuple[float, float] = (0.3, 1.0)  # random square crop side / image short side
    flip_prob: float = 0.5  # horizontal flip probability
    photometric_prob: float = 0.5  # probability of each colour jitter op (0 disables them)

    def __post_init__(self) -> None:
        lo, hi = self.crop_scales
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"data.crop_scales must satisfy 0 < lo <= hi <= 1, got {self.crop_scales}")
        if self.train_size < 32 or self.batch_size < 1 or self.workers < 0:
            raise ValueError(f"data: need train_size >= 32, batch_size >= 1, workers >= 0; got "
                             f"{self.train_size}, {self.batch_size}, {self.workers}")


def normalize(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float32 (3, H, W) tensor, ``(pixel - MEAN) / STD``."""
    return (torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float() - MEAN) / STD


def resolve_root(cfg: DataConfig) -> Path:
    """``cfg.root``, or the generated dataset (built on first use) when it is None."""
    if cfg.root is not None:
        return Path(cfg.root).expanduser()
    return synth.ensure_synthetic(seed=cfg.synth_seed, n_train=cfg.synth_train_images,
                                  n_val=cfg.synth_val_images, size=cfg.synth_image_size)


def _load_split(root: str | Path, split: str) -> tuple[Path, list[ImageAnnotation]]:
    """Annotations of `split` and its image folder; errors for a wrong layout or missing images."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    image_dir = root / f"WIDER_{split}" / "images"
    ann_path = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    for p in (image_dir, ann_path):
        if not p.exists():
            raise FileNotFoundError(f"not a WIDER FACE root (official layout): {p} is missing")
    anns = read_annotations(ann_path)
    if not anns:
        raise ValueError(f"{ann_path}: empty dataset (no images annotated)")
    missing = [a.name for a in anns if not (image_dir / a.name).is_file()]
    if missing:
        raise FileNotFoundError(f"{ann_path}: {len(missing)} of {len(anns)} annotated images are missing "
                                f"under {image_dir}, e.g. {', '.join(missing[:5])}")
    return image_dir, anns


UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)  # what PIL raises


def _decode(path: Path) -> np.ndarray | None:
    """RGB uint8 pixels, or None (with a warning) when the file cannot be decoded."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except UNREADABLE as err:
        warnings.warn(f"skipping unreadable image {path}: {err}", RuntimeWarning, stacklevel=2)
        return None


def check_readable(dataset: "WiderFaceDataset", n: int = 16) -> None:
    """ValueError unless at least one of `n` images spread over the split decodes: with none
    readable, training would skip every batch, run 0 steps and still write a checkpoint."""
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(n, len(dataset))).astype(int))
    first = ""
    for i in picks:
        path = dataset.image_dir / dataset.annotations[i].name
        try:
            with Image.open(path) as im:
                im.convert("RGB")
            return
        except UNREADABLE as err:
            first = first or f"{path}: {err}"
    raise ValueError(f"{dataset.image_dir}: none of the {len(picks)} {dataset.split} images checked "
                     f"(spread over all {len(dataset)}) can be read, e.g. {first}")


class WiderFaceDataset(Dataset):
    """Images of one split with their trainable boxes (x1 y1 x2 y2, input pixels).

    ``ds[i]`` or ``ds[(i, seed)]`` -> (uint8 (H, W, 3) image, float32 (N, 4) boxes) after
    ``transform(image, boxes, rng)``, with ``rng = numpy.random.default_rng(seed)`` (seed = i if
    not given); None when the image cannot be decoded (``collate`` drops it).
    """

    def __init__(self, root: str | Path, split: str, transform: Transform | None = None):
        self.image_dir, self.annotations = _load_split(root, split)
        self.split, self.transform = split, transform
        # shared with DataLoader workers (fork or spawn), so the main process sees their skips
        self._skipped = multiprocessing.Value("q", 0)

    def __len__(self) -> int:
        return len(self.annotations)

    @property
    def n_skipped(self) -> int:
        """Samples skipped so far because the image could not be decoded (all workers, all epochs)."""
        return int(self._skipped.value)

    @property
    def n_faces(self) -> int:
        """Annotated faces, including invalid and zero-size rows."""
        return sum(len(a.boxes) for a in self.annotations)

    @property
    def n_trainable(self) -> int:
        return sum(len(a.trainable()) for a in self.annotations)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
        index, seed = item if isinstance(item, tuple) else (item, item)
        ann = self.annotations[index]
        image = _decode(self.image_dir / ann.name)
        if image is None:
            with self._skipped.get_lock():
                self._skipped.value += 1
            return None
        boxes = ann.trainable()
        if self.transform is not None:
            image, boxes = self.transform(image, boxes, np.random.default_rng(seed))
        return image, boxes.astype(np.float32)


def collate(batch: list) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Stack samples into (images float (B, 3, H, W) normalised, [boxes (N_i, 4) float]).

    None samples (undecodable images) are dropped; images of different sizes are padded
    bottom/right with PAD_VALUE to the largest. An all-None batch gives B = 0: skip it.
    """
    batch = [b for b in batch if b is not None]
    if not batch:
        return torch.zeros(0, 3, 0, 0), []
    h = max(img.shape[0] for img, _ in batch)
    w = max(img.shape[1] for img, _ in batch)
    out = np.full((len(batch), h, w, 3), PAD_VALUE, dtype=np.uint8)
    for i, (img, _) in enumerate(batch):
        out[i, :img.shape[0], :img.shape[1]] = img
    images = (torch.from_numpy(out).permute(0, 3, 1, 2).float() - MEAN) / STD
    return images.contiguous(), [torch.from_numpy(np.asarray(b, np.float32)).reshape(-1, 4) for _, b in batch]


class SeededSampler(Sampler):
    """Yields (index, sample seed) for ``WiderFaceDataset``: order and augmentation depend only on
    (seed, epoch), not on worker count or scheduling.

    ``epoch``: the epoch the next pass draws (it advances after every pass, also with persistent
    workers; a training loop may set it). ``start``: samples of the next pass to skip, for resuming
    mid-epoch with exactly the rest of that epoch; reset to 0 once used. With ``world_size`` > 1
    (torchrun) every rank draws the same permutation and takes every world_size-th sample from
    ``rank`` on, truncated so all ranks take the same number of steps (no rank waits forever).
    """

    def __init__(self, n: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.n, self.seed, self.shuffle, self.epoch, self.start = n, seed, shuffle, 0, 0
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.n // self.world_size if self.world_size > 1 else self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        start, self.epoch, self.start = self.start, self.epoch + 1, 0
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = rng.integers(0, 2**63 - 1, self.n)
        mine = slice(self.rank, self.rank + len(self) * self.world_size, self.world_size)
        order, seeds = order[mine], seeds[mine]
        return iter([(int(i), int(s)) for i, s in zip(order[start:], seeds[start:])])


def _worker_init(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; derive numpy's global state from it too,
    # and keep one intra-op thread per worker so workers do not oversubscribe the cores
    np.random.seed(torch.initial_seed() % 2**32)
    torch.set_num_threads(1)


def build_transform(cfg: DataConfig, train: bool) -> Transform:
    if train:
        return TrainTransform(size=cfg.train_size, crop_scales=cfg.crop_scales, flip_prob=cfg.flip_prob,
                              photometric_prob=cfg.photometric_prob, min_face=cfg.min_face)
    return EvalTransform(size=cfg.train_size)


def build_loader(cfg: DataConfig, split: str, train: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> DataLoader:
    """DataLoader over `split`: train = shuffled + augmented, else in order with the eval resize.

    ``loader.sampler`` is a ``SeededSampler``: set its ``epoch`` / ``start`` to resume a run.
    """
    dataset = WiderFaceDataset(resolve_root(cfg), split, build_transform(cfg, train))
    return DataLoader(
        dataset, batch_size=cfg.batch_size, sampler=SeededSampler(len(dataset), seed, shuffle=train, rank=rank,
                                                                  world_size=world_size),
        num_workers=cfg.workers, collate_fn=collate, worker_init_fn=_worker_init,
        generator=torch.Generator().manual_seed(seed), persistent_workers=cfg.workers > 0,
        pin_memory=torch.cuda.is_available(), drop_last=False)


def val_images(cfg: DataConfig, split: str = "val", limit: int | None = None
               ) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ('<event>/<image>.jpg', uint8 (H, W, 3) RGB) in annotation order, for evaluation.

    Undecodable images are skipped with a warning.
    """
    image_dir, anns = _load_split(resolve_root(cfg), split)
    for ann in anns[:limit]:
        image = _decode(image_dir / ann.name)
        if image is not None:
            yield ann.name, image
