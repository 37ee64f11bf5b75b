"""Morphology and connected blobs in numpy alone, for the reference models (Triton's Python backend
has numpy, not scipy). Linked into the model folders that use it. Morphology works in the plane of
the last two axes, so a volume is handled slice by slice."""

from collections import deque

import numpy as np


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by a square of side 2 * radius + 1, as two separable passes."""
    out = mask.copy()
    for axis in (-2, -1):
        grown = out.copy()
        for step in range(1, radius + 1):
            grown |= np.roll(out, step, axis) | np.roll(out, -step, axis)
        out = grown
    return out


def close(mask: np.ndarray, radius: int) -> np.ndarray:
    """Closing (dilation, then erosion), padded so that nothing wraps around the edges."""
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(radius, radius)] * 2)
    closed = ~dilate(~dilate(padded, radius), radius)
    return closed[..., radius:-radius, radius:-radius]


def between_first_and_last(mask: np.ndarray) -> np.ndarray:
    """True from the first to the last True of each line along the last axis (a scanline fill):
    everything inside a body outline, its dark lungs included."""
    length = mask.shape[-1]
    has = mask.any(axis=-1, keepdims=True)
    first = np.where(has, mask.argmax(axis=-1)[..., None], length)
    last = np.where(has, length - 1 - mask[..., ::-1].argmax(axis=-1)[..., None], -1)
    positions = np.arange(length)
    return (positions >= first) & (positions <= last)


def blobs(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """The 4-connected components of a mask, as lists of (row, column)."""
    seen = np.zeros_like(mask)
    found = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        queue, blob = deque([start]), []
        while queue:
            r, c = queue.popleft()
            blob.append((r, c))
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < mask.shape[0] and 0 <= nc < mask.shape[1] and mask[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    queue.append((nr, nc))
        found.append(blob)
    return found


def bounding_box(blob: list[tuple[int, int]]) -> tuple[int, int, int, int]:
    rows, cols = zip(*blob, strict=True)
    return min(rows), min(cols), max(rows) + 1, max(cols) + 1
