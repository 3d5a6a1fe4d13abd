"""Decoded images kept in memory, shrunk once to the size training needs.

Training reads every image once per epoch, and a tuned run trains three candidates for up to
hundreds of epochs: decoding a 500x375 JPEG (or a 2592x1944 one) each time costs far more
than the crop, flip and small CNN that follow. Here each file is decoded once per process,
reduced so that its shorter side is ``working_side(size)`` (1.5 x the input side: the
smallest crops the pipelines draw, ``RandomResizedCrop`` at scale 0.5, still hold about as
many pixels as the network's input, so the reduction costs no detail), and kept as a
Pillow image, so the same ``torchvision.transforms.v2`` pipelines run on it. Images already
that small are kept as they are (never enlarged).

The cache is bounded (``max_bytes``: 2 GiB, or ``TUNEWISE_IMAGE_CACHE_BYTES``; 0 turns it
off): past it, images are decoded from disk each time as before, so a large folder is slower,
never out of memory. It lives for the process: the candidates of a tuned comparison run
(one process) decode each image once.

Example:
    >>> cache = ImageCache(max_bytes=1 << 20)
    >>> working_side(224), working_side(32)
    (336, 48)
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path

from tunewise.errors import DataError

# the shorter side kept, as a multiple of the network's input side: RandomResizedCrop's
# smallest crop (scale 0.5) is sqrt(0.5) = 0.71 of the side, so 1.5 x never upsamples it
SIDE_FACTOR = 1.5
DEFAULT_MAX_BYTES = 2 << 30


def working_side(size: int) -> int:
    """The shorter side an image is kept at for a network whose input is ``size`` pixels.

    Example:
        >>> working_side(64)
        96
    """
    return math.ceil(size * SIDE_FACTOR)


def decode(path: str | Path, side: int | None = None):
    """The RGB image at ``path``, reduced so its shorter side is ``side`` (``None``: as it is).

    JPEGs are decoded at the smallest of Pillow's DCT scales (1/2, 1/4, 1/8) that still
    leaves the shorter side at least ``side``, then resized with antialiasing.

    Example:
        >>> decode("bee.jpg", 336).size  # doctest: +SKIP
        (448, 336)
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            if side is not None and min(image.size) > side:
                w, h = image.size
                scale = side / min(w, h)
                image.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))  # JPEG: decode smaller
                rgb = image.convert("RGB")
                w, h = rgb.size
                if min(w, h) > side:
                    scale = side / min(w, h)
                    rgb = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
                return rgb
            return image.convert("RGB")
    except OSError as e:  # checked when the data was loaded; changed on disk since
        raise DataError(f"{path}: cannot read the image any more ({e})") from None


class ImageCache:
    """Decoded, reduced images by (path, side), up to ``max_bytes`` of pixels; thread-safe.

    Example:
        >>> cache = ImageCache()
        >>> cache.get("bee.jpg", 336).size  # doctest: +SKIP
        (448, 336)
        >>> cache.stats()  # doctest: +SKIP
        {'images': 1, 'bytes': 451584, 'hits': 0, 'misses': 1, 'uncached': 0}
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._images: dict[tuple[str, int | None, float, int], object] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.uncached = 0

    def get(self, path: str | Path, side: int | None):
        """The image at ``path`` reduced to ``side`` (decoded on the first call only).

        The key includes the file's modification time and size: a file replaced on disk is
        decoded again, not served stale.
        """
        try:
            st = os.stat(path)
        except OSError as e:
            raise DataError(f"{path}: cannot read the image any more ({e.strerror or e})") from None
        key = (str(path), side, st.st_mtime, st.st_size)
        with self._lock:
            image = self._images.get(key)
            if image is not None:
                self.hits += 1
                return image
        image = decode(path, side)
        nbytes = image.width * image.height * 3
        with self._lock:
            self.misses += 1
            if self._bytes + nbytes <= self.max_bytes:
                self._images[key] = image
                self._bytes += nbytes
            else:
                self.uncached += 1
        return image

    def stats(self) -> dict[str, int]:
        """How many images are held and how the lookups went."""
        return {
            "images": len(self._images),
            "bytes": self._bytes,
            "hits": self.hits,
            "misses": self.misses,
            "uncached": self.uncached,
        }

    def clear(self) -> None:
        with self._lock:
            self._images.clear()
            self._bytes = 0


def _max_bytes_from_env() -> int:
    """``TUNEWISE_IMAGE_CACHE_BYTES`` (0 turns the cache off), else 2 GiB."""
    value = os.environ.get("TUNEWISE_IMAGE_CACHE_BYTES", "").strip()
    if not value:
        return DEFAULT_MAX_BYTES
    try:
        return max(0, int(float(value)))
    except ValueError:
        raise DataError(
            f"TUNEWISE_IMAGE_CACHE_BYTES={value!r}: expected a number of bytes (0 turns the cache off)"
        ) from None


_shared: ImageCache | None = None


def shared_cache() -> ImageCache:
    """The process's cache: every loader of every candidate of a run shares it (made on first
    use, sized by ``TUNEWISE_IMAGE_CACHE_BYTES``).

    Example:
        >>> shared_cache() is shared_cache()
        True
    """
    global _shared
    if _shared is None:
        _shared = ImageCache(_max_bytes_from_env())
    return _shared
