"""Images for chat APIs: resized to a size cap and sent inline as base64 data URLs.

Data URLs keep a request self-contained (no file server, same bytes on every retry).
The cache key uses the file's content hash plus these encoding settings instead of
the encoded bytes, so a cache hit costs a hash, not a resize and an encode.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image

from adbench.args import ArgumentError
from adbench.images import ImageError, file_digest, load_image

FORMATS = {"png": "image/png", "jpeg": "image/jpeg"}


@dataclass(frozen=True)
class ImageEncoding:
    """How an image file becomes a data URL.

    max_side: the longer side is scaled down to this many pixels (None: no cap).
    upscale: also scale smaller images up to `max_side` (MMAD's GPT-4o script fits
        every image into 512x512 this way).
    format: "png" (lossless, the default: defects can be a few pixels) or "jpeg".
    quality: JPEG quality (95 is OpenCV's default, which MMAD's script used).
    """

    max_side: int | None = 1024
    upscale: bool = False
    format: str = "png"
    quality: int = 95

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ArgumentError(f"-M image_format must be one of {sorted(FORMATS)}, got {self.format!r}")
        if self.max_side is not None and int(self.max_side) < 1:
            raise ArgumentError(f"-M max_side must be a positive number of pixels, got {self.max_side!r}")
        if not 1 <= int(self.quality) <= 100:
            raise ArgumentError(f"-M jpeg_quality must be in 1..100, got {self.quality!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_size(width: int, height: int, enc: ImageEncoding) -> tuple[int, int]:
    """Size after the cap: aspect ratio kept, sides truncated to integers (as MMAD's script does)."""
    if enc.max_side is None:
        return width, height
    scale = enc.max_side / max(width, height)
    if scale >= 1 and not enc.upscale:
        return width, height
    return max(1, int(width * scale)), max(1, int(height * scale))


def _stat_key(path: str | Path) -> tuple[str, int, int]:
    st = os.stat(path)
    return str(path), st.st_mtime_ns, st.st_size


@lru_cache(maxsize=4096)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    return file_digest(path)


def content_hash(path: str | Path) -> str:
    """sha256 of the file's bytes (memoised per path, modification time and size)."""
    try:
        return _sha256(*_stat_key(path))
    except FileNotFoundError as e:
        raise ImageError(f"image file not found: {path}") from e


@lru_cache(maxsize=16)  # reference images recur across a category's samples; encoded URLs are large
def _encode(path: str, mtime_ns: int, size: int, enc: ImageEncoding) -> str:
    im = load_image(path, "RGB")
    new = target_size(im.width, im.height, enc)
    if new != im.size:
        # BOX averages like OpenCV's INTER_AREA when shrinking; bilinear when enlarging.
        im = im.resize(new, Image.Resampling.BOX if new[0] < im.width else Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    if enc.format == "jpeg":
        im.save(buf, format="JPEG", quality=int(enc.quality))
    else:
        im.save(buf, format="PNG")
    return f"data:{FORMATS[enc.format]};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def data_url(path: str | Path, enc: ImageEncoding) -> str:
    """The image at `path`, resized by `enc`, as a `data:` URL (ImageError names an unreadable file)."""
    try:
        return _encode(*_stat_key(path), enc)
    except FileNotFoundError as e:
        raise ImageError(f"image file not found: {path}") from e
