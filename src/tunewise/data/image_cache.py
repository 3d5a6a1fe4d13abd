"""Decoded images kept in memory, reduced once to the size the network needs.

Training reads every image once per epoch, and a tuned run trains three candidates for up to
hundreds of epochs; decoding each JPEG every time made the input pipeline about 3x slower than
serving it from memory (bench/image_cache.py, BENCHMARKS.md). Every image an image model sees — in
training, on dev, on the test split, in ``predict`` and in the service — is first decoded to
RGB and reduced (antialiased) until its shorter side is ``working_side(size)``, 5/3 of the
network's input side; images already that small are kept as they are. 5/3 is enough that
no crop the pipelines draw is enlarged: ``RandomResizedCrop`` at scale 0.5 and aspect 3/4
cuts a square image to a short side of sqrt(0.5 x 0.75) = 0.61 of it, and 0.61 x 5/3 > 1.
The reduction is recorded in the model's config (``decode_side``), so a saved model is
always fed as it was trained.

Training's loaders keep the reduced images in a bounded cache (``ImageCache``) for the
epochs and tuning candidates of one process (one comparison run); past its budget the
least recently used images are dropped and decoded again when next needed, so a large
folder is slower, never out of memory.

Example:
    >>> working_side(224), working_side(32)
    (374, 54)
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from pathlib import Path

from tunewise.errors import DataError

# the shorter side kept, as a multiple of the network's input side (see the module docstring)
SIDE_FACTOR = 5 / 3
DEFAULT_MAX_BYTES = 2 << 30


def working_side(size: int) -> int:
    """The shorter side an image is reduced to for a network whose input is ``size`` pixels.

    Example:
        >>> working_side(64)
        107
    """
    return math.ceil(size * SIDE_FACTOR)


def shrink(image, side: int | None):
    """``image`` (RGB, Pillow) reduced so that its shorter side is ``side``; never enlarged.

    Example:
        >>> from PIL import Image
        >>> shrink(Image.new("RGB", (500, 375)), 100).size
        (133, 100)
        >>> shrink(Image.new("RGB", (32, 32)), 100).size
        (32, 32)
    """
    from PIL import Image

    w, h = image.size
    if side is None or min(w, h) <= side:
        return image
    scale = side / min(w, h)
    size = (side, max(1, round(h * scale))) if w <= h else (max(1, round(w * scale)), side)
    return image.resize(size, Image.BILINEAR)  # Pillow antialiases when it reduces


def decode(path: str | Path, side: int | None = None):
    """The image at ``path`` as RGB, reduced to ``side`` (``None``: as it is).

    Example:
        >>> decode("bee.jpg", 374).size  # a 500x375 photo  # doctest: +SKIP
        (499, 374)
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            return shrink(image.convert("RGB"), side)
    except OSError as e:  # checked when the data was loaded; changed on disk since
        raise DataError(f"{path}: cannot read the image any more ({e})") from None


class ImageCache:
    """Decoded, reduced images by (path, side), at most ``max_bytes`` of pixels, least
    recently used dropped first; safe to share between threads.

    Example:
        >>> cache = ImageCache()
        >>> cache.get("bee.jpg", 374).size  # a 500x375 photo  # doctest: +SKIP
        (499, 374)
        >>> cache.stats()["misses"]  # doctest: +SKIP
        1
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        # (path, side) -> ((mtime_ns, size in bytes), image): a file replaced on disk is decoded again
        self._images: OrderedDict[tuple[str, int | None], tuple[tuple[int, int], object]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evicted = 0

    @staticmethod
    def _nbytes(image) -> int:
        return image.width * image.height * len(image.getbands())

    def get(self, path: str | Path, side: int | None):
        """The image at ``path`` reduced to ``side``, decoded on the first call only."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise DataError(f"{path}: cannot read the image any more ({e.strerror or e})") from None
        key, stamp = (str(path), side), (st.st_mtime_ns, st.st_size)
        with self._lock:
            held = self._images.get(key)
            if held is not None and held[0] == stamp:
                self._images.move_to_end(key)
                self.hits += 1
                return held[1]
        image = decode(path, side)
        nbytes = self._nbytes(image)
        with self._lock:
            self.misses += 1
            held = self._images.get(key)
            if held is not None and held[0] == stamp:  # another thread decoded it meanwhile
                return held[1]
            if held is not None:  # the file changed on disk: the old pixels go
                self._bytes -= self._nbytes(held[1])
                del self._images[key]
            if nbytes > self.max_bytes:
                return image
            while self._bytes + nbytes > self.max_bytes:
                _, (_, old) = self._images.popitem(last=False)
                self._bytes -= self._nbytes(old)
                self.evicted += 1
            self._images[key] = (stamp, image)
            self._bytes += nbytes
        return image

    def stats(self) -> dict[str, int]:
        """How many images are held, their bytes, and how the lookups went."""
        with self._lock:
            return {
                "images": len(self._images),
                "bytes": self._bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evicted": self.evicted,
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
    except (ValueError, OverflowError):
        raise DataError(
            f"TUNEWISE_IMAGE_CACHE_BYTES={value!r}: expected a number of bytes (0 turns the cache off)"
        ) from None


_shared: ImageCache | None = None


def shared_cache() -> ImageCache:
    """The process's cache, shared by every loader of every candidate of a run (made on first
    use, sized by ``TUNEWISE_IMAGE_CACHE_BYTES``). Each DataLoader worker process, if a loader
    uses any, has its own.

    Example:
        >>> shared_cache() is shared_cache()
        True
    """
    global _shared
    if _shared is None:
        _shared = ImageCache(_max_bytes_from_env())
    return _shared
