"""A generated face dataset in the exact WIDER FACE layout: the offline default when no --data is given.

``ensure_synthetic()`` draws faces procedurally with PIL + numpy (head ellipse, hair, ears, eyes,
brows, nose, mouth, beard/glasses/cap, smooth shading) at many sizes (8 px up to half the image),
poses (in-plane roll; yaw as a horizontal squash plus a sideways shift of the features), skin tones,
blur and partial occlusion, on cluttered backgrounds (gradients, colour blobs, shapes, windows,
noise) with face-like distractors (featureless heads, backs of heads, eye pairs without a face,
skin-coloured balls). The first call writes it to a cache folder (the default 1,200 images take
~30 CPU-seconds, spread over the cores: ~15-30 s on 2 cores); later calls reuse it::

    >>> root = ensure_synthetic()            # doctest: +SKIP
    >>> root                                  # doctest: +SKIP
    PosixPath('/home/me/.cache/facenas/synth-5c0d7e31a2')

    <root>/WIDER_{train,val}/images/<event>/<image>.jpg      e.g. 2--Synthetic_Crowd/2_Synthetic_Crowd_17.jpg
    <root>/wider_face_split/wider_face_{train,val}_bbx_gt.txt
    <root>/ground_truth/wider_face_val.mat, wider_{easy,medium,hard}_val.mat
    <root>/COMPLETE.json                                      marker, written last

Per face the annotation carries WIDER's attributes, measured from what was drawn: blur 0/1/2 (blur
sigma relative to face height), occlusion 0/1/2 (fraction of the face ellipse covered by occluders
or other heads: < 8 %, < 35 %, more), illumination 1 for extreme lighting, pose 1 for strong yaw/roll,
expression 1 for an open mouth, invalid 1 when more than 85 % is hidden. Easy/Medium/Hard keep
lists (see ``difficulty_keep``) are nested like WIDER's. The same seed gives byte-identical images
and annotation text; the .mat files hold the same data (scipy stamps their header with the time).
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

GENERATOR_VERSION = 1  # bump when the drawing changes: it is part of the cache folder's hash
DEFAULT_TRAIN_IMAGES = 1000
DEFAULT_VAL_IMAGES = 200
DEFAULT_IMAGE_SIZE = 320  # square images; matches DetectorConfig.input_size, so val needs no resize
MARKER = "COMPLETE.json"

MIN_FACE_PX = 8  # smallest face height drawn
EASY_MIN_PX, MEDIUM_MIN_PX = 40, 20  # face height thresholds of the Easy / Medium keep lists

# name, probability, (min, max) faces per image, (min, max) face height as a fraction of image size
EVENTS = (
    ("0--Synthetic_Portrait", 0.25, (1, 3), (1 / 8, 1 / 2)),
    ("1--Synthetic_Group", 0.25, (3, 10), (1 / 20, 1 / 5)),
    ("2--Synthetic_Crowd", 0.20, (10, 40), (0.0, 1 / 10)),
    ("3--Synthetic_Mixed", 0.30, (0, 15), (0.0, 1 / 2)),
)
_SPLIT_CODE = {"train": 0, "val": 1}

_SKIN = np.array([(255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 90),
                  (160, 100, 62), (120, 74, 44), (86, 54, 34), (62, 40, 26)], dtype=float)
_HAIR = np.array([(18, 14, 12), (45, 30, 20), (90, 58, 32), (150, 108, 58), (205, 172, 112),
                  (165, 78, 38), (135, 135, 135), (228, 228, 222)], dtype=float)
_IRIS = np.array([(60, 35, 20), (95, 60, 30), (60, 100, 150), (70, 110, 70), (25, 20, 20)], dtype=float)


def _colour(rng: np.random.Generator, palette: np.ndarray | None = None, jitter: float = 12.0
            ) -> tuple[int, int, int]:
    base = palette[rng.integers(len(palette))] if palette is not None else rng.uniform(0, 255, 3)
    return tuple(int(v) for v in np.clip(base + rng.normal(0, jitter, 3), 0, 255))


def _shade(rgb: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(v * f, 0, 255)) for v in rgb)


def _mix(a: tuple, b: tuple, t: float) -> tuple[int, int, int]:
    return tuple(int(x * (1 - t) + y * t) for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------- faces

def _draw_eyes(dr: ImageDraw.ImageDraw, rng, fx, ye, wf, d, yaw, brow):
    e, ew = 0.21 * wf, 0.17 * wf
    eh = ew * rng.uniform(0.4, 0.6)
    closed = rng.random() < 0.07
    iris = _colour(rng, _IRIS, 8)
    line = max(1, d // 60)
    glasses = rng.choice(3, p=[0.84, 0.12, 0.04])  # none, glasses, sunglasses
    tilt = rng.uniform(-0.3, 0.3) * eh
    for side in (-1, 1):
        squash = 1 - 0.5 * max(0.0, side * yaw)  # the eye on the side the head turns to narrows
        x = fx + side * e * (1 - 0.3 * side * yaw)
        w2, h2 = ew * squash / 2, eh / 2
        if closed:
            dr.arc((x - w2, ye - h2, x + w2, ye + h2), 20, 160, fill=(40, 25, 20), width=line + 1)
        else:
            dr.ellipse((x - w2, ye - h2, x + w2, ye + h2), fill=_colour(rng, np.array([(236, 234, 228)]), 6),
                       outline=(50, 35, 30), width=line)
            ir, gaze = h2 * 0.95, yaw * w2 * 0.3
            dr.ellipse((x + gaze - ir * squash, ye - ir, x + gaze + ir * squash, ye + ir), fill=iris)
            pr = ir * 0.45
            dr.ellipse((x + gaze - pr * squash, ye - pr, x + gaze + pr * squash, ye + pr), fill=(8, 8, 8))
        yb = ye - eh * rng.uniform(1.1, 1.8)
        dr.line([(x - w2 * 1.2, yb + side * tilt), (x + w2 * 1.2, yb - side * tilt)], fill=brow,
                width=max(1, int(d * rng.uniform(0.025, 0.05))))
        if glasses:
            box = (x - w2 * 1.5, ye - eh * 1.3, x + w2 * 1.5, ye + eh * 1.3)
            dr.ellipse(box, fill=(20, 20, 25) if glasses == 2 else None, outline=(30, 30, 30),
                       width=max(1, d // 40))
    if glasses:
        dr.line([(fx - e * 0.45, ye - eh * 0.3), (fx + e * 0.45, ye - eh * 0.3)], fill=(30, 30, 30),
                width=max(1, d // 40))
    return eh


def _draw_face(rng: np.random.Generator, d: int):
    """One face of width ~d px on a transparent canvas (centre of the head = centre of the canvas).

    Returns (rgba image, face mask "L", semi-axes (a, b) of the face ellipse, yaw, expression);
    shading is added by `_shade_patch` once the patch has its final size (cheaper on small faces).
    """
    yaw = float(np.clip(rng.normal(0, 0.35), -0.9, 0.9))
    wf, hf = d * (1 - 0.2 * abs(yaw)), d * rng.uniform(1.15, 1.35)
    cw, ch = int(d * 2.0) // 2 * 2, int(hf * 1.9) // 2 * 2
    cx, cy = cw / 2, ch / 2
    skin, hair = _colour(rng, _SKIN), _colour(rng, _HAIR)
    img = Image.new("RGBA", (cw, ch), skin + (0,))
    dr = ImageDraw.Draw(img)
    left, top, right, bottom = cx - wf / 2, cy - hf / 2, cx + wf / 2, cy + hf / 2
    style = rng.choice(4, p=[0.45, 0.3, 0.13, 0.12])  # short, long, bald, cap
    if style == 0:
        dr.ellipse((left - 0.06 * wf, top - 0.12 * hf, right + 0.06 * wf, cy + 0.15 * hf), fill=hair)
    elif style == 1:
        dr.ellipse((left - 0.14 * wf, top - 0.1 * hf, right + 0.14 * wf,
                    bottom + hf * rng.uniform(0.0, 0.45)), fill=hair)
    if style != 1:  # ears; the far one hides when the head turns
        for side in (-1, 1):
            if side * yaw > 0.4:
                continue
            ex = cx + side * wf * 0.48
            dr.ellipse((ex - 0.08 * d, cy - 0.12 * hf, ex + 0.08 * d, cy + 0.1 * hf), fill=_shade(skin, 0.9))
    dr.ellipse((left, top, right, bottom), fill=skin)
    if style in (0, 1) and rng.random() < 0.75:  # fringe over the forehead
        fh = hf * rng.uniform(0.12, 0.3)
        dr.chord((left - 0.03 * wf, top - 0.05 * hf, right + 0.03 * wf, top + 2 * fh), 180, 360, fill=hair)
    elif style == 3:  # cap with a brim
        cap = _colour(rng)
        dr.chord((left - 0.05 * wf, top - 0.25 * hf, right + 0.05 * wf, top + 0.5 * hf), 180, 360, fill=cap)
        dr.rectangle((left - 0.1 * wf + yaw * 0.2 * wf, top + 0.08 * hf, right + 0.1 * wf + yaw * 0.2 * wf,
                      top + 0.14 * hf), fill=_shade(cap, 0.8))
    fx = cx + yaw * 0.25 * wf  # features shift towards the side the head turns to
    ye = cy - hf * rng.uniform(0.0, 0.08)
    brow = _shade(hair, 0.7)
    if rng.random() < 0.12:  # beard, under the mouth
        dr.chord((left + 0.02 * wf, cy - 0.1 * hf, right - 0.02 * wf, bottom), 15, 165, fill=hair)
    eh = _draw_eyes(dr, rng, fx, ye, wf, d, yaw, brow)
    nx, yn = fx + yaw * 0.1 * wf, cy + hf * rng.uniform(0.12, 0.2)
    dr.polygon([(nx, ye + eh * 0.5), (nx - 0.07 * wf, yn), (nx + 0.07 * wf, yn)], fill=_shade(skin, 0.9))
    for s in (-1, 1):
        dr.ellipse((nx + s * 0.035 * wf - 0.02 * wf, yn - 0.015 * hf, nx + s * 0.035 * wf + 0.02 * wf,
                    yn + 0.01 * hf), fill=_shade(skin, 0.55))
    mx, ym = fx + yaw * 0.05 * wf, cy + hf * rng.uniform(0.27, 0.34)
    mw = 0.36 * wf * (1 - 0.3 * abs(yaw)) * rng.uniform(0.8, 1.2)
    lip = _mix(skin, (170, 55, 65), rng.uniform(0.3, 0.7))
    mouth = rng.choice(3, p=[0.45, 0.35, 0.2])  # smile, neutral, open
    if mouth == 0:
        dr.arc((mx - mw / 2, ym - mw * 0.35, mx + mw / 2, ym + mw * 0.15), 20, 160, fill=lip,
               width=max(1, d // 22))
    elif mouth == 1:
        dr.line([(mx - mw / 2, ym), (mx + mw / 2, ym)], fill=lip, width=max(1, d // 22))
    else:
        mh = mw * rng.uniform(0.3, 0.7)
        dr.ellipse((mx - mw / 2, ym - mh / 2, mx + mw / 2, ym + mh / 2), fill=(60, 20, 25), outline=lip,
                   width=max(1, d // 25))
        dr.rectangle((mx - mw * 0.3, ym - mh * 0.4, mx + mw * 0.3, ym - mh * 0.15), fill=(235, 235, 225))
    mask = Image.new("L", (cw, ch), 0)
    ImageDraw.Draw(mask).ellipse((left, top, right, bottom), fill=255)
    return img, mask, (wf / 2, hf / 2), yaw, int(mouth == 2)



def _shade_patch(rng: np.random.Generator, img: Image.Image, a: float, b: float) -> Image.Image:
    """Smooth shading (light from a random side) and skin texture on a premultiplied head patch
    whose face ellipse, semi-axes (a, b), is centred in the patch."""
    arr = np.asarray(img).astype(np.float32)
    h, w = arr.shape[:2]
    yy, xx = np.ogrid[0:h, 0:w]
    lx, ly = rng.uniform(-0.3, 0.3, 2)
    r2 = ((xx + 0.5 - w / 2) / a - lx) ** 2 + ((yy + 0.5 - h / 2) / b - ly) ** 2
    light = 1.08 - rng.uniform(0.12, 0.3) * np.clip(r2, 0, 1.5)
    noise = rng.standard_normal((h, w, 1), dtype=np.float32) * 3 * arr[..., 3:] / 255
    # premultiplied alpha: rgb must stay <= alpha
    arr[..., :3] = np.clip(arr[..., :3] * light[..., None] + noise, 0, arr[..., 3:])
    return Image.fromarray(arr.astype(np.uint8), "RGBa")


def _render_face(rng: np.random.Generator, height: float):
    """A face scaled so its box is `height` px tall, rolled and maybe blurred / badly lit.

    Returns (premultiplied "RGBa" patch, face mask, box x1 y1 x2 y2 in patch pixels, attrs dict).
    """
    img, mask, (a, b), yaw, expression = _draw_face(rng, max(64, int(height)))
    roll = float(np.clip(rng.normal(0, 12), -40, 40)) if rng.random() > 0.03 else rng.uniform(-75, 75)
    t = np.deg2rad(roll)
    ex = np.sqrt((a * np.cos(t)) ** 2 + (b * np.sin(t)) ** 2)  # half extents of the rolled ellipse
    ey = np.sqrt((a * np.sin(t)) ** 2 + (b * np.cos(t)) ** 2)
    s = height / (2 * ey)
    w, h = img.size
    nw, nh = max(2, round(w * s / 2) * 2), max(2, round(h * s / 2) * 2)  # even: centre stays exact
    # premultiplied alpha, so resampling does not bleed the transparent colour; resize before
    # rotating (rotation is the costly op, and cheap on the small patch)
    img = _shade_patch(rng, img.convert("RGBa").resize((nw, nh), Image.LANCZOS), a * nw / w, b * nh / h)
    mask = mask.resize((nw, nh), Image.BILINEAR)
    if abs(roll) > 0.5:
        img = img.rotate(roll, resample=Image.BICUBIC, expand=True)
        mask = mask.rotate(roll, resample=Image.BILINEAR, expand=True)
    ex, ey = ex * nw / w, ey * nh / h
    cx, cy = img.size[0] / 2, img.size[1] / 2  # rotate(expand=True) keeps the centre in the centre
    box = np.array([cx - ex, cy - ey, cx + ex, cy + ey])
    blur_kind = rng.choice(3, p=[0.7, 0.18, 0.12])
    sigma = float(height * (0.0, rng.uniform(0.02, 0.045), rng.uniform(0.06, 0.12))[blur_kind])
    if sigma >= 0.3:
        img = img.filter(ImageFilter.GaussianBlur(sigma))
    illumination = int(rng.random() < 0.08)
    if illumination:
        arr = np.asarray(img).astype(np.float32)
        alpha = arr[..., 3:] / 255
        if rng.random() < 0.5:
            arr[..., :3] *= rng.uniform(0.25, 0.45)  # deep shadow
        else:
            arr[..., :3] = arr[..., :3] * 0.45 + rng.uniform(120, 140) * alpha  # washed out
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGBa")
    pose = int(abs(yaw) > 0.6 or abs(roll) > 30)
    return img, mask, box, dict(sigma=sigma, expression=expression, illumination=illumination, pose=pose)


def _occlude(rng: np.random.Generator, canvas: Image.Image, box: np.ndarray) -> np.ndarray:
    """Draw an occluder over part of `box`; return its boolean mask over the canvas."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    mask = Image.new("L", canvas.size, 0)
    dr = ImageDraw.Draw(mask)
    kind = rng.integers(5)
    if kind == 0:  # object entering from a side
        side, f = rng.integers(4), rng.uniform(0.15, 0.7)
        rect = [(x1 - w, y1 - 0.2 * h, x1 + f * w, y2 + 0.2 * h),
                (x2 - f * w, y1 - 0.2 * h, x2 + w, y2 + 0.2 * h),
                (x1 - 0.2 * w, y1 - h, x2 + 0.2 * w, y1 + f * h),
                (x1 - 0.2 * w, y2 - f * h, x2 + 0.2 * w, y2 + h)]
        dr.rectangle(rect[side], fill=255)
        colour = _colour(rng)
    elif kind == 1:  # hand: a skin ellipse
        cx, cy, r = x1 + rng.uniform(0.2, 0.8) * w, y1 + rng.uniform(0.4, 1.0) * h, rng.uniform(0.2, 0.45)
        dr.ellipse((cx - r * w, cy - r * h * 0.8, cx + r * w, cy + r * h * 0.8), fill=255)
        colour = _colour(rng, _SKIN)
    elif kind == 2:  # face mask over nose and mouth
        dr.rounded_rectangle((x1 + 0.08 * w, y1 + 0.5 * h, x2 - 0.08 * w, y2 - 0.02 * h),
                             radius=max(1, w * 0.15), fill=255)
        colour = _colour(rng, np.array([(200, 225, 240), (240, 240, 240), (40, 40, 45)]), 8)
    elif kind == 3:  # pole / bar
        bw, bx = w * rng.uniform(0.15, 0.45), x1 + rng.uniform(0, 1) * w
        dr.rectangle((bx - bw / 2, 0, bx + bw / 2, canvas.size[1]), fill=255)
        colour = _colour(rng)
    else:  # random polygon
        pts = [(x1 + rng.uniform(-0.3, 1.3) * w, y1 + rng.uniform(-0.3, 1.3) * h)
               for _ in range(rng.integers(3, 6))]
        dr.polygon(pts, fill=255)
        colour = _colour(rng)
    canvas.paste(colour, (0, 0) + canvas.size, mask)
    return np.asarray(mask) > 127


# ----------------------------------------------------------------------------- backgrounds, distractors

def _background(rng: np.random.Generator, size: int) -> Image.Image:
    kind = rng.integers(3)
    if kind == 0:  # linear gradient between two colours
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / size
        g = np.clip(xx * np.cos(t) + yy * np.sin(t), 0, 1)[..., None]
        arr = c0 * (1 - g) + c1 * g
    elif kind == 1:  # smooth colour blobs
        g = int(rng.integers(2, 12))
        low = Image.fromarray(rng.uniform(0, 255, (g, g, 3)).astype(np.uint8))
        arr = np.asarray(low.resize((size, size), Image.BICUBIC), dtype=np.float64)
    else:
        arr = np.broadcast_to(rng.uniform(0, 255, 3), (size, size, 3))
    img = Image.fromarray(arr.astype(np.uint8))
    dr = ImageDraw.Draw(img)
    if rng.random() < 0.25:  # a building facade: a grid of windows
        x0, y0 = rng.uniform(0, size * 0.6, 2)
        step, win = rng.uniform(8, 40), _colour(rng)
        for gx in np.arange(x0, size, step):
            for gy in np.arange(y0, size, step * rng.uniform(0.9, 1.1)):
                dr.rectangle((gx, gy, gx + step * 0.6, gy + step * 0.5), fill=win)
    for _ in range(rng.integers(5, 40)):
        p = rng.uniform(-0.1, 1.1, 4) * size
        box = (min(p[0], p[2]), min(p[1], p[3]), max(p[0], p[2]), max(p[1], p[3]))
        colour = _colour(rng, _SKIN if rng.random() < 0.15 else None)
        shape = rng.integers(4)
        if shape == 0:
            dr.rectangle(box, fill=colour)
        elif shape == 1:
            dr.ellipse(box, fill=colour, outline=_colour(rng) if rng.random() < 0.3 else None)
        elif shape == 2:
            dr.polygon([tuple(rng.uniform(0, size, 2)) for _ in range(rng.integers(3, 7))], fill=colour)
        else:
            dr.line([tuple(p[:2]), tuple(p[2:])], fill=colour, width=int(rng.integers(1, 7)))
    return img


def _distractor(rng: np.random.Generator, img: Image.Image, size: int) -> None:
    """Face-like clutter that is not a face: featureless heads, backs of heads, eye pairs, balls."""
    dr = ImageDraw.Draw(img)
    h = float(np.exp(rng.uniform(np.log(MIN_FACE_PX), np.log(size / 3))))
    w = h * rng.uniform(0.7, 0.9)
    cx, cy = rng.uniform(0, size, 2)
    kind = rng.integers(4)
    if kind in (0, 1):
        dr.ellipse((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), fill=_colour(rng, _SKIN))
        hair = _colour(rng, _HAIR)
        if kind == 1:  # back of a head: hair all over
            dr.ellipse((cx - w * 0.55, cy - h * 0.58, cx + w * 0.55, cy + h * 0.45), fill=hair)
        elif rng.random() < 0.6:
            dr.chord((cx - w * 0.53, cy - h * 0.56, cx + w * 0.53, cy), 180, 360, fill=hair)
    elif kind == 2:  # eyes with no face around them
        for side in (-1, 1):
            x, ew = cx + side * w * 0.21, w * 0.17
            dr.ellipse((x - ew / 2, cy - ew / 4, x + ew / 2, cy + ew / 4), fill=(235, 235, 230),
                       outline=(40, 30, 30))
            dr.ellipse((x - ew / 5, cy - ew / 5, x + ew / 5, cy + ew / 5), fill=_colour(rng, _IRIS))
    else:  # a ball in skin-like colours
        r = w / 2
        c = _colour(rng, np.vstack([_SKIN, [(230, 120, 30)]]))
        dr.ellipse((cx - r, cy - r, cx + r, cy + r), fill=c)
        dr.ellipse((cx - r * 0.5, cy - r * 0.6, cx, cy - r * 0.1), fill=_shade(c, 1.15))


# ------------------------------------------------------------------------------------------ images

def _overlaps(box: np.ndarray, boxes: list[np.ndarray]) -> bool:
    if not boxes:
        return False
    b = np.array(boxes)
    pad = 0.15 * (box[3] - box[1])  # room for hair between heads
    iw = np.minimum(box[2] + pad, b[:, 2]) - np.maximum(box[0] - pad, b[:, 0])
    ih = np.minimum(box[3] + pad, b[:, 3]) - np.maximum(box[1] - pad, b[:, 1])
    return bool(((iw > 0) & (ih > 0)).any())


def render_image(seed: int, split: str, index: int, size: int = DEFAULT_IMAGE_SIZE):
    """Draw one image. Returns (name '<event>/<image>.jpg', jpeg bytes, boxes (N,4) x y w h int,
    attributes (N,6) int in detection.annotations.ATTRIBUTES order)."""
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
    e = rng.choice(len(EVENTS), p=[ev[1] for ev in EVENTS])
    event, _, (nmin, nmax), (fmin, fmax) = EVENTS[e]
    canvas = _background(rng, size)
    for _ in range(rng.integers(0, 6)):
        _distractor(rng, canvas, size)
    lo, hi = np.log(max(MIN_FACE_PX, fmin * size)), np.log(max(MIN_FACE_PX, fmax * size))
    heights = np.sort(np.exp(rng.uniform(lo, hi, int(rng.integers(nmin, nmax + 1)))))[::-1]
    owner = np.full((size, size), -1, dtype=np.int16)  # who is visible at each pixel: face id, or -1
    boxes, areas, attrs = [], [], []
    for height in heights:  # big faces first, so small ones fill the gaps left
        patch, mask, pbox, at = _render_face(rng, height)
        bw, bh = pbox[2] - pbox[0], pbox[3] - pbox[1]
        if bw >= size or bh >= size:
            continue
        for _ in range(30):
            bx, by = rng.uniform(0, size - bw), rng.uniform(0, size - bh)
            px, py = int(round(bx - pbox[0])), int(round(by - pbox[1]))
            box = pbox + [px, py, px, py]
            if box.min() >= 0 and box.max() <= size and not _overlaps(box, boxes):
                break
        else:
            continue
        i = len(boxes)
        canvas.paste(patch.convert("RGBA"), (px, py), patch.convert("RGBA"))
        alpha, face = np.asarray(patch)[..., 3] > 127, np.asarray(mask) > 127
        ys = slice(max(py, 0), min(py + patch.size[1], size))
        xs = slice(max(px, 0), min(px + patch.size[0], size))
        crop = (slice(ys.start - py, ys.stop - py), slice(xs.start - px, xs.stop - px))
        region = owner[ys, xs]
        region[alpha[crop]] = -1  # this head's hair covers what was there
        region[face[crop]] = i
        boxes.append(box)
        areas.append(max(1, int(face.sum())))
        attrs.append(at)
        if rng.random() < 0.22:
            owner[_occlude(rng, canvas, box)] = -1
    arr = np.asarray(canvas).astype(np.float32)
    image_sigma = float(rng.uniform(0.5, 1.5)) if rng.random() < 0.1 else 0.0  # whole-image defocus
    if image_sigma:
        arr = np.asarray(Image.fromarray(arr.astype(np.uint8)).filter(ImageFilter.GaussianBlur(image_sigma)),
                         dtype=np.float32)
    if rng.random() < 0.5:
        arr += rng.standard_normal(arr.shape, dtype=np.float32) * rng.uniform(1, 8)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8)).save(buf, "JPEG",
                                                                     quality=int(rng.integers(75, 96)))
    visible = np.bincount(owner.ravel() + 1, minlength=len(boxes) + 1)[1:]
    rows, atts = [], []
    for i, (box, at) in enumerate(zip(boxes, attrs)):
        hidden = 1 - visible[i] / areas[i]
        x1, y1 = int(round(box[0])), int(round(box[1]))
        rows.append((x1, y1, int(round(box[2])) - x1, int(round(box[3])) - y1))
        blur = np.hypot(at["sigma"], image_sigma) / (box[3] - box[1])
        atts.append((0 if blur < 0.015 else 1 if blur < 0.05 else 2, at["expression"], at["illumination"],
                     int(hidden > 0.85), 0 if hidden < 0.08 else 1 if hidden < 0.35 else 2, at["pose"]))
    name = f"{event}/{event.split('--')[0]}_{event.split('--')[1]}_{index}.jpg"
    return (name, buf.getvalue(), np.array(rows, dtype=np.float32).reshape(-1, 4),
            np.array(atts, dtype=np.int64).reshape(-1, 6))


def difficulty_keep(boxes: np.ndarray, attributes: np.ndarray) -> dict[str, np.ndarray]:
    """1-based indices of the faces each WIDER difficulty keeps; easy ⊆ medium ⊆ hard by construction.

    hard: every valid face; medium: height >= MEDIUM_MIN_PX, blur and occlusion <= 1;
    easy: height >= EASY_MIN_PX, no blur, no occlusion, normal lighting.
    """
    h = boxes[:, 3]
    blur, illum, invalid, occ = attributes[:, 0], attributes[:, 2], attributes[:, 3], attributes[:, 4]
    hard = invalid == 0
    medium = hard & (h >= MEDIUM_MIN_PX) & (blur <= 1) & (occ <= 1)
    easy = medium & (h >= EASY_MIN_PX) & (blur == 0) & (occ == 0) & (illum == 0)
    return {k: np.flatnonzero(m) + 1 for k, m in (("easy", easy), ("medium", medium), ("hard", hard))}


# ------------------------------------------------------------------------------------------- cache

def _work(task: tuple) -> tuple:
    out_dir, seed, split, index, size = task
    name, jpeg, boxes, attrs = render_image(seed, split, index, size)
    path = Path(out_dir) / f"WIDER_{split}" / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg)  # plain write: the whole folder is staged and renamed into place
    return split, index, name, boxes, attrs


def _n_workers(n_images: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return 1 if n_images < 64 else max(1, min(cpus, 8))


def generate(out_dir: Path, seed: int, n_train: int, n_val: int, size: int,
             workers: int | None = None) -> None:
    """Write the whole dataset into `out_dir` (no marker; see ensure_synthetic)."""
    from detection.annotations import ImageAnnotation, write_annotations
    from detection.wider_eval import write_ground_truth

    tasks = [(str(out_dir), seed, split, i, size)
             for split, n in (("train", n_train), ("val", n_val)) for i in range(n)]
    workers = workers or _n_workers(len(tasks))
    if workers > 1:
        # spawn: safe whatever the parent has loaded (torch, threads); children import only numpy + PIL
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_work, tasks, chunksize=16)
    else:
        results = [_work(t) for t in tasks]
    split_dir = out_dir / "wider_face_split"
    for split in ("train", "val"):
        anns = [ImageAnnotation(name, boxes, attrs) for s, _, name, boxes, attrs in results if s == split]
        write_annotations(split_dir / f"wider_face_{split}_bbx_gt.txt", anns)
    val = [(name, boxes, attrs) for s, _, name, boxes, attrs in results if s == "val"]
    keeps = [difficulty_keep(b, a) for _, b, a in val]
    write_ground_truth(out_dir / "ground_truth", [(name, boxes) for name, boxes, _ in val],
                       {k: [kp[k] for kp in keeps] for k in ("easy", "medium", "hard")})


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def ensure_synthetic(cache_dir: Path | None = None, seed: int = 0, n_train: int = DEFAULT_TRAIN_IMAGES,
                     n_val: int = DEFAULT_VAL_IMAGES, size: int = DEFAULT_IMAGE_SIZE,
                     workers: int | None = None) -> Path:
    """Return the root of the generated dataset for these parameters, generating it on first use.

    cache_dir: folder holding ``synth-<hash>`` datasets (default ``$FACENAS_CACHE`` or
    ``~/.cache/facenas``). The dataset is built in a ``.partial-<pid>`` sibling with the marker
    written last, then renamed into place: a killed run leaves no folder that looks complete, and
    leftovers of dead runs (and a marker-less folder) are removed and regenerated.
    """
    from core.io import atomic_write_text

    if min(n_train, n_val) < 1 or size < 4 * MIN_FACE_PX:
        raise ValueError(f"synthetic dataset needs n_train, n_val >= 1 and size >= {4 * MIN_FACE_PX}, "
                         f"got n_train={n_train}, n_val={n_val}, size={size}")
    base = Path(cache_dir or os.environ.get("FACENAS_CACHE") or Path.home() / ".cache" / "facenas")
    params = dict(seed=seed, n_train=n_train, n_val=n_val, size=size, version=GENERATOR_VERSION)
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    root = base / f"synth-{digest}"
    if (root / MARKER).is_file():
        return root
    base.mkdir(parents=True, exist_ok=True)
    for stale in base.glob(f"{root.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    staging = base / f"{root.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    start = time.perf_counter()
    generate(staging, seed, n_train, n_val, size, workers)
    atomic_write_text(staging / MARKER, json.dumps(
        dict(params, seconds=round(time.perf_counter() - start, 2)), indent=1) + "\n")
    if root.exists() and not (root / MARKER).is_file():
        shutil.rmtree(root)  # half-written by older code or damaged: replace
    try:
        os.rename(staging, root)
    except OSError:  # another process finished first; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
        if not (root / MARKER).is_file():
            raise
    return root
