"""Training augmentation and the evaluation resize, as RetinaFace/SCRFD do them, in numpy + PIL.

Every transform takes and returns ``(image, boxes)``: image uint8 (H, W, 3) RGB, boxes float32
(N, 4) x1 y1 x2 y2 in that image's pixels (x2/y2 exclusive, so a box covering pixel columns 10..19
is x1=10, x2=20). All randomness comes from the ``numpy.random.Generator`` passed in, so a seed
fixes the output.

    >>> t = TrainTransform(size=320)
    >>> img, boxes = t(image, boxes, np.random.default_rng(0))      # doctest: +SKIP
    >>> img.shape, boxes.shape                                       # doctest: +SKIP
    ((320, 320, 3), (7, 4))

Train pipeline (``TrainTransform``): random square crop with scale jitter (keeps faces whose
centre lies inside) -> resize to ``size`` -> horizontal flip -> photometric distortion -> drop
faces with a side below ``min_face`` pixels. Evaluation uses ``resize_for_eval`` (long side =
size, pad to a square or to a multiple of 32) and maps predictions back with the returned scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

PAD_VALUE = 128  # uint8 fill for padding: ~0 after normalisation (see detection.data.normalize)

# RGB -> YIQ and back: hue jitter is a rotation of the (I, Q) chroma plane, cheaper than HSV.
_RGB2YIQ = np.array([[0.299, 0.587, 0.114],
                     [0.596, -0.274, -0.322],
                     [0.211, -0.523, 0.312]], dtype=np.float32)
_YIQ2RGB = np.linalg.inv(_RGB2YIQ).astype(np.float32)


def random_square_crop(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                       scales: tuple[float, float] = (0.3, 1.0), tries: int = 10
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Crop a random square of side ``U(scales) * short side``; keep faces whose centre is inside.

    Kept boxes are clipped to the crop. If ``tries`` random positions all lose every face, the last
    try places the crop around a random face's centre, so an image with faces keeps at least one.
    """
    h, w = image.shape[:2]
    short = min(h, w)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    for attempt in range(tries + 1):
        side = max(1, int(round(rng.uniform(*scales) * short)))
        if attempt < tries or len(boxes) == 0:
            x0 = int(rng.integers(0, w - side + 1))
            y0 = int(rng.integers(0, h - side + 1))
        else:  # fallback: any crop position whose square contains this face's centre
            cx, cy = np.clip(centres[rng.integers(len(boxes))], 0, [w - 1e-3, h - 1e-3])
            # x0 <= cx < x0 + side, and the crop inside the image
            x0 = int(rng.integers(max(0, int(np.floor(cx - side)) + 1), min(w - side, int(cx)) + 1))
            y0 = int(rng.integers(max(0, int(np.floor(cy - side)) + 1), min(h - side, int(cy)) + 1))
        inside = ((centres[:, 0] >= x0) & (centres[:, 0] < x0 + side)
                  & (centres[:, 1] >= y0) & (centres[:, 1] < y0 + side))
        if inside.any() or len(boxes) == 0 or attempt == tries:
            break
    out = boxes[inside] - np.array([x0, y0, x0, y0], dtype=np.float32)
    out = np.clip(out, 0, side).astype(np.float32)
    return np.ascontiguousarray(image[y0:y0 + side, x0:x0 + side]), out


def resize(image: np.ndarray, boxes: np.ndarray, width: int, height: int,
           resample: int = Image.BILINEAR) -> tuple[np.ndarray, np.ndarray]:
    """Resize to (height, width) and scale the boxes with it."""
    h, w = image.shape[:2]
    if (h, w) != (height, width):
        image = np.asarray(Image.fromarray(image).resize((width, height), resample))
    scale = np.array([width / w, height / h, width / w, height / h], dtype=np.float32)
    return image, (boxes * scale).astype(np.float32)


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right: pixel column c goes to W-1-c, so box [x1, x2) goes to [W-x2, W-x1)."""
    w = image.shape[1]
    out = boxes.copy()
    out[:, 0], out[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), out


def photometric_distort(image: np.ndarray, rng: np.random.Generator, brightness: float = 32.0,
                        contrast: tuple[float, float] = (0.5, 1.5),
                        saturation: tuple[float, float] = (0.5, 1.5), hue_deg: float = 18.0,
                        p: float = 0.5) -> np.ndarray:
    """RetinaFace-style colour jitter; each of the four ops is applied with probability ``p``.

    brightness: add U(-b, b) (uint8 units); contrast: scale around the mean grey; saturation: blend
    with the grey image; hue: rotate the YIQ chroma plane by U(-hue_deg, hue_deg) degrees.
    """
    img = image.astype(np.float32)
    if rng.random() < p:
        img += rng.uniform(-brightness, brightness)
    if rng.random() < p:
        mean = img.mean()
        img = (img - mean) * rng.uniform(*contrast) + mean
    if rng.random() < p:
        grey = img @ _RGB2YIQ[0]
        img = grey[..., None] + (img - grey[..., None]) * rng.uniform(*saturation)
    if rng.random() < p:
        t = np.deg2rad(rng.uniform(-hue_deg, hue_deg))
        rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]],
                       dtype=np.float32)
        img = img @ (_YIQ2RGB @ rot @ _RGB2YIQ).T
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def drop_small(boxes: np.ndarray, min_face: float) -> np.ndarray:
    """Keep boxes whose width and height are both >= ``min_face`` pixels."""
    wh = boxes[:, 2:] - boxes[:, :2]
    return boxes[(wh >= min_face).all(axis=1)]


@dataclass(frozen=True)
class TrainTransform:
    """crop -> resize to ``size`` x ``size`` -> flip -> colour jitter -> drop faces < ``min_face``."""

    size: int = 320
    crop_scales: tuple[float, float] = (0.3, 1.0)
    flip_prob: float = 0.5
    photometric_prob: float = 0.5  # per colour op (brightness, contrast, saturation, hue)
    min_face: float = 4.0

    def __call__(self, image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
        image, boxes = random_square_crop(image, boxes, rng, self.crop_scales)
        # random interpolation, as RetinaFace does, so the net does not learn one resampler's look
        resample = (Image.BILINEAR, Image.BICUBIC, Image.NEAREST, Image.LANCZOS)[rng.integers(4)]
        image, boxes = resize(image, boxes, self.size, self.size, resample)
        if rng.random() < self.flip_prob:
            image, boxes = hflip(image, boxes)
        if self.photometric_prob > 0:
            image = photometric_distort(image, rng, p=self.photometric_prob)
        return image, drop_small(boxes, self.min_face)


def resize_for_eval(image: np.ndarray, size: int, pad: str = "square", multiple: int = 32
                    ) -> tuple[np.ndarray, float]:
    """Resize so the long side is ``size`` (aspect kept), pad bottom/right with ``PAD_VALUE``.

    pad="square": output is size x size; pad="multiple": each side is rounded up to ``multiple``.
    Returns (image, scale); a box predicted on the output maps back to the input as ``box / scale``.
    """
    if pad not in ("square", "multiple"):
        raise ValueError(f"pad must be 'square' or 'multiple', got {pad!r}")
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    resized, _ = resize(image, np.zeros((0, 4), np.float32), nw, nh)
    if pad == "square":
        ph, pw = size, size
    else:
        ph, pw = -(-nh // multiple) * multiple, -(-nw // multiple) * multiple
    out = np.full((ph, pw, 3), PAD_VALUE, dtype=np.uint8)
    out[:nh, :nw] = resized
    return out, scale


@dataclass(frozen=True)
class EvalTransform:
    """``resize_for_eval`` as a dataset transform (boxes scaled along; the rng is unused)."""

    size: int = 320
    pad: str = "square"

    def __call__(self, image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        out, scale = resize_for_eval(image, self.size, self.pad)
        return out, (boxes * scale).astype(np.float32)
