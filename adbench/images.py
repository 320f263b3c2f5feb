"""Reading images and masks with errors that name the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image, UnidentifiedImageError


class ImageError(ValueError):
    """An image or mask that cannot be read; the message names the file."""


def load_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Open an image fully (decoding every pixel) and convert it to `mode`."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            return im.convert(mode)
    except FileNotFoundError as e:
        raise ImageError(f"image file not found: {p}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {p}: {e}") from e


def check_image(path: str | Path) -> None:
    """Raise ImageError unless `path` is a readable image (cheap: checks structure, not pixels)."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.verify()
    except FileNotFoundError as e:
        raise ImageError(f"image file not found: {p}") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {p}: {e}") from e


def file_sha1(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash of a file (cache keys for masks, images sent to APIs)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
