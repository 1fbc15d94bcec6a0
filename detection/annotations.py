"""Reader/writer for the WIDER FACE annotation text (``wider_face_split/wider_face_*_bbx_gt.txt``).

The format, per image::

    0--Parade/0_Parade_marchingband_1_849.jpg     # image path under WIDER_<split>/images
    1                                             # number of faces
    449 330 122 149 0 0 0 0 0 0                   # x1 y1 w h blur expression illumination invalid occlusion pose

Quirks of the official file that this reader accepts: an image with 0 faces is followed by one row of
zeros (which is not a face); rows of zero width or height; the ``invalid`` flag; trailing spaces.
A malformed line raises ValueError naming the file and the 1-based line number, as does an image
path that is absolute or climbs out of the images folder with ``..``.

    >>> anns = read_annotations("wider_face_split/wider_face_val_bbx_gt.txt")  # doctest: +SKIP
    >>> anns[0].name, anns[0].boxes.shape
    ('0--Parade/0_Parade_Parade_0_194.jpg', (5, 4))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from core.io import read_text

ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")


@dataclass(frozen=True)
class ImageAnnotation:
    name: str  # "<event>/<image>.jpg", relative to WIDER_<split>/images
    boxes: np.ndarray  # (N, 4) float32 x1, y1, w, h in pixels
    attributes: np.ndarray  # (N, 6) int64, columns as ATTRIBUTES

    @property
    def invalid(self) -> np.ndarray:
        return self.attributes[:, 3].astype(bool)

    def trainable(self, min_size: float = 1.0) -> np.ndarray:
        """Boxes training should use: valid flag and both sides >= `min_size` pixels, as x1y1x2y2."""
        b = self.boxes
        keep = (~self.invalid) & (b[:, 2] >= min_size) & (b[:, 3] >= min_size)
        out = b[keep].copy()
        out[:, 2:] += out[:, :2]
        return out


def _ints(text: str, path: Path, lineno: int, what: str) -> list[int]:
    try:
        return [int(float(t)) if "." in t else int(t) for t in text.split()]
    except (ValueError, OverflowError):  # not a number, nan, inf
        raise ValueError(f"{path}:{lineno}: expected {what}, got {text.strip()!r}") from None


def read_annotations(path: str | Path) -> list[ImageAnnotation]:
    """Parse a WIDER FACE annotation file; see the module docstring for the format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    lines = read_text(path).splitlines()
    out: list[ImageAnnotation] = []
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        if not name.lower().endswith((".jpg", ".jpeg", ".png")) or "/" not in name:
            raise ValueError(f"{path}:{i + 1}: expected an image path like <event>/<image>.jpg, "
                             f"got {name!r}")
        parts = PurePosixPath(name.replace("\\", "/"))
        if parts.is_absolute() or ".." in parts.parts:  # would read outside WIDER_<split>/images
            raise ValueError(f"{path}:{i + 1}: image path {name!r} leaves the images folder "
                             "(absolute or with '..'); expected <event>/<image>.jpg")
        if i + 1 >= len(lines):
            raise ValueError(f"{path}:{i + 2}: file ends before the face count of {name}")
        count = _ints(lines[i + 1], path, i + 2, "a face count")
        if len(count) != 1 or count[0] < 0:
            raise ValueError(f"{path}:{i + 2}: expected a face count, got {lines[i + 1].strip()!r}")
        n = count[0]
        rows_to_read = max(n, 1)  # a count of 0 is followed by one row of zeros
        rows = []
        for j in range(rows_to_read):
            lineno = i + 2 + j
            if lineno >= len(lines):
                raise ValueError(f"{path}:{lineno + 1}: file ends inside the faces of {name} "
                                 f"({n} announced)")
            vals = _ints(lines[lineno], path, lineno + 1, "x1 y1 w h and 6 attributes")
            if len(vals) != 10:
                raise ValueError(f"{path}:{lineno + 1}: expected 10 numbers (x1 y1 w h blur "
                                 f"expression illumination invalid occlusion pose), got "
                                 f"{len(vals)}: {lines[lineno].strip()!r}")
            rows.append(vals)
        arr = np.array(rows[:n], dtype=np.int64).reshape(n, 10)
        out.append(ImageAnnotation(name, arr[:, :4].astype(np.float32), arr[:, 4:]))
        i += 2 + rows_to_read
    return out


def write_annotations(path: str | Path, annotations: list[ImageAnnotation]) -> None:
    """Write annotations in the official format (with its 0-face convention)."""
    from core.io import atomic_write_text

    parts = []
    for ann in annotations:
        parts.append(ann.name)
        parts.append(str(len(ann.boxes)))
        if len(ann.boxes) == 0:
            parts.append("0 0 0 0 0 0 0 0 0 0 ")
        for box, attrs in zip(ann.boxes, ann.attributes):
            parts.append(" ".join(str(int(round(v))) for v in box) + " "
                         + " ".join(str(int(a)) for a in attrs) + " ")
    atomic_write_text(path, "\n".join(parts) + "\n")
