"""Reading images and masks with errors that name the file.

Every image adbench opens (queries, references, masks, report thumbnails) goes through
`open_image`, so the ways a file can fail are caught in one place and become an
`ImageError` naming the file: missing, unreadable, or so large that Pillow refuses it
as a decompression bomb (`Image.MAX_IMAGE_PIXELS`; a PNG can declare 30000 x 30000
pixels in a few kilobytes). Callers turn that error into a recorded failure, a
`data check` finding or a report placeholder, never a crash of the whole run.

16-bit images (industrial cameras write them) are scaled to 8 bits (`to_8bit`):
Pillow's own `convert("RGB")` clips every value above 255, which turns them white.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from adbench.errors import UserError

#: Integer modes wider than 8 bits that Pillow reads 16-bit files into.
_WIDE_INT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


class ImageError(UserError):
    """An image or mask that cannot be read; the message names the file.

    `path` is the file and `reason` what is wrong with it, for reports that show the
    path already.
    """

    def __init__(self, message: str, path: str | Path = "", reason: str = "") -> None:
        super().__init__(message)
        self.path = str(path)
        self.reason = reason or message


@contextlib.contextmanager
def open_image(path: str | Path, what: str = "image") -> Iterator[Image.Image]:
    """`Image.open` whose failures (also while the caller decodes) are ImageErrors naming the file."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            yield im
    except ImageError:
        raise
    except FileNotFoundError as e:
        raise ImageError(f"{what} file not found: {p}", p, "file not found") from e
    except Image.DecompressionBombError as e:
        reason = f"too large to decode safely ({e})"
        raise ImageError(f"cannot read {what} {p}: {reason}", p, reason) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read {what} {p}: {e}", p, str(e)) from e


def to_8bit(im: Image.Image, path: str | Path = "") -> Image.Image:
    """The image with 8-bit channels: 16-bit greyscale is scaled (65535 -> 255), not clipped.

    Pillow reads 16-bit greyscale PNG/TIFF as an `I;16*` or `I` mode; 16-bit colour
    files it already reduces to 8-bit RGB. A 32-bit integer image whose values do not
    fit 16 bits, or a floating-point image, has no agreed scale and is refused.
    """
    if im.mode not in _WIDE_INT_MODES and im.mode != "F":
        return im
    arr = np.asarray(im)
    if im.mode == "F" or (arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535)):
        reason = f"{im.mode} pixels outside 0..65535; convert the file to 8 or 16 bits"
        raise ImageError(f"cannot read image {path}: {reason}", path, reason)
    if im.mode == "I" and (not arr.size or int(arr.max()) <= 255):
        return Image.fromarray(arr.astype(np.uint8), "L")  # an 8-bit image stored as 32-bit integers
    return Image.fromarray(((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8), "L")


def load_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Open an image fully (decoding every pixel) and convert it to `mode`."""
    with open_image(path) as im:
        im.load()
        return to_8bit(im, path).convert(mode)


def check_image(path: str | Path) -> None:
    """Raise ImageError unless `path` is a readable image (cheap: checks structure, not pixels)."""
    with open_image(path) as im:
        im.verify()


def read_mask_pixels(path: str | Path) -> np.ndarray:
    """A mask's defect pixels as a 2-D bool array: any non-zero value in any channel.

    Values are never rescaled (VisA stores class ids 1, 2, ...; a 16-bit mask's 1 is a
    defect too); an alpha channel is dropped first, since an opaque one is not a defect.
    """
    with open_image(path, "mask") as im:
        im.load()
        if im.mode in ("RGBA", "LA", "PA"):
            im = im.convert("RGB" if im.mode == "RGBA" else "L")
        arr = np.asarray(im)
    return arr.any(axis=2) if arr.ndim == 3 else arr != 0


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels."""
    with open_image(path) as im:
        return im.size


def file_sha1(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash of a file (cache keys for masks, images sent to APIs)."""
    return file_digest(path, "sha1", chunk)


def file_digest(path: str | Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes, read in chunks (weights files are large)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
