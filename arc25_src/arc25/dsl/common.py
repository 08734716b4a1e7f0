"""The BARC DSL `common`, written from the BARC induction-format contract (section 5).

Generated programs run `from common import *` and then call these functions.
Every function indexes `grid[x, y]` with x = numpy axis 0 and y = axis 1; nothing
here ever transposes. `np` and `random` are exported on purpose: programs use them
without importing them.

This module must stay self-contained (numpy, scipy, stdlib only) and free of
import-time side effects, because the executor loads it by file path as `common`.
scipy.ndimage is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from typing import Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "np",
    "random",
    "Color",
    # drawing and filling
    "flood_fill",
    "draw_line",
    "blit",
    "blit_sprite",
    "blit_object",
    "randomly_scatter_points",
    "random_scatter_points",
    # geometry and measurement
    "bounding_box",
    "bounding_box_mask",
    "crop",
    "object_position",
    "object_colors",
    "translate",
    "scale_sprite",
    "scale_pattern",
    "collision",
    "contact",
    "check_between_objects",
    # objects and topology
    "find_connected_components",
    "detect_objects",
    "object_interior",
    "object_boundary",
    "object_neighbors",
    "is_contiguous",
    # symmetry
    "Symmetry",
    "TranslationalSymmetry",
    "MirrorSymmetry",
    "RotationalSymmetry",
    "detect_translational_symmetry",
    "detect_mirror_symmetry",
    "detect_rotational_symmetry",
    "orbit",
    # generators
    "random_free_location_for_sprite",
    "random_free_location_for_object",
    "randomly_spaced_indices",
    "random_sprite",
    "generate_sprite",
    "show_colored_grid",
]


class Color:
    """ARC colours as plain int constants (deliberately not an Enum: programs do arithmetic)."""

    BLACK = 0
    BLUE = 1
    RED = 2
    GREEN = 3
    YELLOW = 4
    GREY = 5
    GRAY = 5
    PINK = 6
    ORANGE = 7
    TEAL = 8
    PURPLE = 8
    MAROON = 9
    BROWN = 9
    TRANSPARENT = 0
    BACKGROUND = 0

    ALL_COLORS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    NOT_BLACK = [1, 2, 3, 4, 5, 6, 7, 8, 9]


# --------------------------------------------------------------------------- argument normalisation


_PLAIN_TYPES = frozenset({int, float, bool, str, type(None)})


def _plain(value):
    """A numpy scalar or 0-d array as the Python value it holds; lists and tuples of them element-wise.

    Programs take coordinates from np.argwhere/np.where/.shape and colours from grid
    cells, so most of their arguments are np.int64 (or np.int32, np.intp, np.bool_,
    a 0-d array). Numpy scalars differ from Python ones where it hurts: np.bool_ has
    no `-`, unsigned ints wrap, 0-d arrays are unhashable and not iterable, and
    np.full(..., np.int32(0)) changes the dtype. Converting at entry makes every
    function behave exactly as with Python values. Arrays of one or more dimensions
    (grids, sprites) and other objects pass through untouched.
    """
    if type(value) in _PLAIN_TYPES:
        return value  # the common case, first: this runs on every argument of every call
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value
    if type(value) in (list, tuple) and not any(isinstance(v, np.ndarray) and v.ndim > 0 for v in value):
        return type(value)(_plain(v) for v in value)
    return value


def _listed(value):
    """A 1-d numpy array given where a list is expected (colours, sizes) as a list of Python values.

    Not done for every argument: Symmetry.apply takes arrays of coordinates on purpose.
    Needed because an array has no truth value (`if colors:`) and is no list instance.
    """
    return value.tolist() if isinstance(value, np.ndarray) and value.ndim == 1 else value


def _plain_args(fn: Callable) -> Callable:
    """Decorator: every argument through `_plain` before the function sees it."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*[_plain(a) for a in args], **{k: _plain(v) for k, v in kwargs.items()})

    return wrapper


def _ndimage():
    """scipy.ndimage, imported on first use: importing it up front triples this module's import time."""
    from scipy import ndimage

    return ndimage


_PLUS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
_SQUARE = np.ones((3, 3), dtype=bool)


def _structure(connectivity: int) -> np.ndarray:
    """scipy structuring element for 4- or 8-connectivity; ValueError otherwise."""
    if connectivity == 4:
        return _PLUS
    if connectivity == 8:
        return _SQUARE
    raise ValueError("Connectivity must be 4 or 8.")


def _neighbour_offsets(connectivity: int) -> list[tuple[int, int]]:
    orthogonal = [(1, 0), (-1, 0), (0, 1), (0, -1)]
    if connectivity == 4:
        return orthogonal
    return orthogonal + [(1, 1), (1, -1), (-1, 1), (-1, -1)]


def _in_bounds(shape: Sequence[int], x: int, y: int) -> bool:
    return 0 <= x < shape[0] and 0 <= y < shape[1]


def _as_color_list(colors) -> list:
    """Accept a single colour where a list is expected (a common slip in generated code)."""
    colors = _listed(colors)
    if colors is None:
        return []
    if isinstance(colors, (int, np.integer)):
        return [colors]
    return list(colors)


# --------------------------------------------------------------------------- drawing


@_plain_args
def flood_fill(grid: np.ndarray, x: int, y: int, color: int, connectivity: int = 4) -> None:
    """In place: recolour the region of cells equal to grid[x, y] that contains (x, y).

    connectivity 4 is orthogonal, 8 adds diagonals (anything else: AssertionError).
    Nothing happens when `color` equals the region's colour.
    """
    assert connectivity in (4, 8), "flood_fill: Connectivity must be 4 or 8."
    x, y = int(x), int(y)
    old_color = grid[x, y]
    if old_color == color:
        return
    n, m = grid.shape
    x, y = x % n, y % m  # numpy accepted a negative start index; continue from the same cell
    offsets = _neighbour_offsets(connectivity)
    # an explicit stack: a 30x30 region is deeper than Python's recursion limit
    stack = [(x, y)]
    while stack:
        cx, cy = stack.pop()
        if grid[cx, cy] != old_color:
            continue
        grid[cx, cy] = color
        for dx, dy in offsets:
            nx, ny = cx + dx, cy + dy
            if 0 <= nx < n and 0 <= ny < m and grid[nx, ny] == old_color:
                stack.append((nx, ny))


def _sign(value) -> int:
    # int() first: numpy comparisons give np.bool_, which has no `-`
    return int(value > 0) - int(value < 0)


@_plain_args
def draw_line(
    grid: np.ndarray,
    x: int,
    y: int,
    end_x: int | None = None,
    end_y: int | None = None,
    length: int | None = None,
    direction: tuple[int, int] | None = None,
    color: int | None = None,
    stop_at_color: Iterable[int] = [],
) -> tuple[int, int]:
    """Paint a ray from (x, y) in place; return the last painted cell, or the start if none.

    With (end_x, end_y): length = max(|dx|, |dy|) + 1 and direction = (dx, dy).
    length None means 2 * max(grid.shape). Each direction component is reduced to
    its sign, so the line is one of the 8 rays. Out-of-bounds points are skipped
    (drawing continues); an in-bounds cell whose colour is in `stop_at_color` ends it.
    """
    assert (end_x is None) == (end_y is None), "draw_line: give both end_x and end_y, or neither."
    assert x == int(x) and y == int(y), "draw_line: x and y must be integers."
    x, y = int(x), int(y)
    if end_x is not None:
        direction = (end_x - x, end_y - y)
        length = max(abs(end_x - x), abs(end_y - y)) + 1
    if length is None:
        length = 2 * max(grid.shape)
    if direction is None:
        raise ValueError("draw_line: give a direction or an end point.")
    # a direction may also be a numpy array (np.sign(...)): its items are numpy scalars
    dx, dy = _sign(_plain(direction[0])), _sign(_plain(direction[1]))
    stops = _as_color_list(stop_at_color)

    stop_x, stop_y = x, y
    for i in range(int(length)):
        px, py = x + i * dx, y + i * dy
        if not _in_bounds(grid.shape, px, py):
            continue
        if grid[px, py] in stops:
            break
        grid[px, py] = color
        stop_x, stop_y = px, py
    return stop_x, stop_y


@_plain_args
def blit(grid: np.ndarray, sprite: np.ndarray, x: int = 0, y: int = 0, background: int | None = None) -> np.ndarray:
    """Copy sprite[i, j] to grid[x+i, y+j] in place and return the same grid.

    Pixels equal to `background` are transparent (unless background is None).
    Targets outside the grid, negative ones included, are skipped, never wrapped.
    """
    sprite = np.asarray(sprite)
    x, y = int(x), int(y)
    n, m = grid.shape
    # the part of the sprite that lands inside the grid
    i0, j0 = max(0, -x), max(0, -y)
    i1, j1 = min(sprite.shape[0], n - x), min(sprite.shape[1], m - y)
    if i0 >= i1 or j0 >= j1:
        return grid
    part = sprite[i0:i1, j0:j1]
    target = grid[x + i0 : x + i1, y + j0 : y + j1]
    if background is None:
        target[...] = part
    else:
        opaque = part != background
        target[opaque] = part[opaque]
    return grid


@_plain_args
def blit_sprite(grid: np.ndarray, sprite: np.ndarray, x: int, y: int, background: int = Color.BLACK) -> np.ndarray:
    """Draw `sprite` with its top-left at (x, y); `background` pixels are transparent."""
    return blit(grid, sprite, x=x, y=y, background=background)


@_plain_args
def blit_object(grid: np.ndarray, obj: np.ndarray, background: int = Color.BLACK) -> np.ndarray:
    """Draw a full-canvas object at its own position; `background` pixels are transparent."""
    return blit(grid, obj, x=0, y=0, background=background)


@_plain_args
def randomly_scatter_points(grid: np.ndarray, color: int, density: float = 0.5, background: int = Color.BLACK) -> np.ndarray:
    """Paint random background cells with `color` until density * n * m are painted."""
    n, m = grid.shape
    # capped by the free cells so a full grid cannot loop forever
    target = min(math.ceil(density * n * m), int(np.sum(grid == background)))
    colored = 0
    while colored < target:
        x, y = np.random.randint(0, n), np.random.randint(0, m)
        if grid[x, y] == background:
            grid[x, y] = color
            colored += 1
    return grid


random_scatter_points = randomly_scatter_points


# --------------------------------------------------------------------------- geometry


@_plain_args
def bounding_box(grid: np.ndarray, background: int = Color.BLACK) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the non-background cells; w spans axis 0, h axis 1.

    An all-background grid of shape (n, m) gives (n, m, -n, -m).
    """
    n, m = grid.shape
    xs, ys = np.nonzero(grid != background)
    if len(xs) == 0:
        return n, m, -n, -m
    x_min, y_min = int(xs.min()), int(ys.min())
    return x_min, y_min, int(xs.max()) - x_min + 1, int(ys.max()) - y_min + 1


@_plain_args
def bounding_box_mask(grid: np.ndarray, background: int = Color.BLACK) -> np.ndarray:
    """Boolean array, True inside the bounding box of the non-background cells."""
    mask = np.zeros(grid.shape, dtype=bool)
    x, y, w, h = bounding_box(grid, background=background)
    mask[x : x + w, y : y + h] = True
    return mask


@_plain_args
def crop(grid: np.ndarray, background: int = Color.BLACK) -> np.ndarray:
    """View of the bounding box of the non-background cells; shape (0, 0) if there are none."""
    x, y, w, h = bounding_box(grid, background)
    return grid[x : x + w, y : y + h]


def _int_if_whole(value: float) -> float | int:
    if abs(value - round(value)) < 1e-6:
        return int(round(value))
    return value


@_plain_args
def object_position(obj: np.ndarray, background: int = Color.BLACK, anchor: str = "upper left") -> tuple:
    """(x, y) of an anchor of the object's bounding box; default the upper-left corner.

    Anchors: upper/lower left/right, center, upper/lower center, left/right center
    ("top"/"bottom" accepted, case and spaces ignored). Half-way coordinates stay floats.
    """
    anchor = anchor.lower().replace(" ", "").replace("top", "upper").replace("bottom", "lower")
    x, y, w, h = bounding_box(obj, background=background)
    right, lower = x + w - 1, y + h - 1
    mid_x, mid_y = x + (w - 1) / 2, y + (h - 1) / 2
    anchors = {
        "upperleft": (x, y),
        "upperright": (right, y),
        "lowerleft": (x, lower),
        "lowerright": (right, lower),
        "center": (mid_x, mid_y),
        "uppercenter": (mid_x, y),
        "lowercenter": (mid_x, lower),
        "leftcenter": (x, mid_y),
        "rightcenter": (right, mid_y),
    }
    assert anchor in anchors, "Invalid anchor"
    ax, ay = anchors[anchor]
    return _int_if_whole(ax), _int_if_whole(ay)


@_plain_args
def object_colors(obj: np.ndarray, background: int = Color.BLACK) -> list:
    """The colours present in the object, background excluded, in set order (not sorted)."""
    return list(set(obj.flatten()) - {background})


@_plain_args
def translate(obj: np.ndarray, x: int, y: int, background: int = Color.BLACK) -> np.ndarray:
    """New array of the same shape with every cell moved by (x, y); pixels moved off are lost."""
    x, y = int(x), int(y)
    n, m = obj.shape
    moved = np.full_like(obj, background)
    if abs(x) >= n or abs(y) >= m:
        return moved
    moved[max(0, x) : n + min(0, x), max(0, y) : m + min(0, y)] = obj[
        max(0, -x) : n - max(0, x), max(0, -y) : m - max(0, y)
    ]
    return moved


@_plain_args
def scale_sprite(sprite: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscale: every pixel becomes a factor x factor block."""
    sprite = np.asarray(sprite)
    return np.kron(sprite, np.ones((factor, factor), dtype=sprite.dtype))


@_plain_args
def scale_pattern(pattern: np.ndarray, scale_factor: int) -> np.ndarray:
    """Deprecated name of scale_sprite."""
    return scale_sprite(pattern, scale_factor)


def _touches(object1, object2, x1, y1, x2, y2, background, offsets) -> bool:
    """True if a non-background cell of object1, shifted by an offset, hits one of object2."""
    dx, dy = int(x2 - x1), int(y2 - y1)
    n2, m2 = object2.shape
    cells = np.argwhere(object1 != background)
    for ox, oy in offsets:
        tx, ty = cells[:, 0] - dx + ox, cells[:, 1] - dy + oy
        inside = (tx >= 0) & (tx < n2) & (ty >= 0) & (ty < m2)
        if np.any(object2[tx[inside], ty[inside]] != background):
            return True
    return False


@_plain_args
def collision(
    _=None, object1=None, object2=None, x1=0, y1=0, x2=0, y2=0, background=Color.BLACK
) -> bool:
    """Do object1 placed at (x1, y1) and object2 placed at (x2, y2) share a non-background cell?"""
    return _touches(object1, object2, x1, y1, x2, y2, background, [(0, 0)])


@_plain_args
def contact(
    _=None, object1=None, object2=None, x1=0, y1=0, x2=0, y2=0, background=Color.BLACK, connectivity=4
) -> bool:
    """Like collision, but 4- (or 8-) adjacent cells also count; overlap counts as contact."""
    if connectivity not in (4, 8):
        raise ValueError("Connectivity must be 4 or 8.")
    offsets = [(0, 0)] + _neighbour_offsets(connectivity)
    return _touches(object1, object2, x1, y1, x2, y2, background, offsets)


@_plain_args
def check_between_objects(obj1, obj2, x, y, padding=0, background=Color.BLACK) -> bool:
    """Is (x, y) in the gap between the two objects along one axis, within their shared band along the other?

    The band is the overlap of the two bounding boxes on the other axis, shrunk by `padding`.
    """
    boxes = [bounding_box(obj1, background=background), bounding_box(obj2, background=background)]
    for first, second in (boxes, boxes[::-1]):
        (ax, ay, aw, ah), (bx, by, bw, bh) = first, second
        in_band_y = y - padding >= max(ay, by) and y + padding < min(ay + ah, by + bh)
        if ax + aw <= x < bx and in_band_y:
            return True
    for first, second in (boxes, boxes[::-1]):
        (ax, ay, aw, ah), (bx, by, bw, bh) = first, second
        in_band_x = x - padding >= max(ax, bx) and x + padding < min(ax + aw, bx + bw)
        if ay + ah <= y < by and in_band_x:
            return True
    return False


# --------------------------------------------------------------------------- objects


def _component(grid: np.ndarray, mask: np.ndarray, background: int) -> np.ndarray:
    return np.where(mask, grid, background)


@_plain_args
def find_connected_components(
    grid: np.ndarray, background: int = Color.BLACK, connectivity: int = 4, monochromatic: bool = True
) -> list[np.ndarray]:
    """Connected components as full-canvas objects (the grid on the component, background elsewhere).

    monochromatic=False: components of grid != background, in raster (label) order.
    monochromatic=True: each colour of set(grid) - {background} is labelled on its
    own, in that set's iteration order, and the lists are concatenated.
    """
    structure = _structure(connectivity)
    if not monochromatic:
        labeled, count = _ndimage().label(grid != background, structure)
        return [_component(grid, labeled == i, background) for i in range(1, count + 1)]
    components = []
    # the same set expression as BARC's, so colours come in the same order
    for color in set(grid.flatten()) - {background}:
        labeled, count = _ndimage().label(grid == color, structure)
        components.extend(_component(grid, labeled == i, background) for i in range(1, count + 1))
    return components


def _only_colors(cells: np.ndarray, colors, background: int) -> bool:
    return all(c in colors or c == background for c in cells.flatten())


def _scan_windows(grid, allowed_dimensions, background, colors, predicate, existing) -> list[np.ndarray]:
    """Every allowed window holding a non-background cell and passing the filters, as full-canvas objects."""
    found = []
    for n, m in allowed_dimensions:
        for i in range(grid.shape[0] - n + 1):
            for j in range(grid.shape[1] - m + 1):
                window = grid[i : i + n, j : j + m]
                if not np.any(window != background):
                    continue
                if colors is not None and not _only_colors(window, colors, background):
                    continue
                if predicate is not None and not predicate(window):
                    continue
                candidate = np.full(grid.shape, background)
                candidate[i : i + n, j : j + m] = window
                if not any(np.array_equal(candidate, obj) for obj in existing):
                    found.append(candidate)
    return found


# How many distinct sub-searches the exact overlap resolution may run before it settles for the
# greedy choice. BARC's search is exponential in the number of overlapping candidates: 3x3
# windows over a busy 30x30 grid (~800 candidates) never finish. A sub-search costs tens of
# microseconds plus a pass over (candidates x cells) booleans, so the limit shrinks with that
# product, keeping a call within a few tenths of a second on a loaded CPU. It depends only on
# the sizes, never on the clock, so the answer is the same on every machine. Measured for
# issue 8 on the first train input of 150 ARC training tasks with four window-size lists:
# at most 0.22 s per call; on grids up to 400 cells the answer is the exact one in 451 of the
# 491 calls whose exact search ends within 5 s (44 more run longer: a 2 s program timeout).
OVERLAP_SEARCH_MAX_STEPS = 5_000
OVERLAP_SEARCH_MIN_STEPS = 500
OVERLAP_SEARCH_CELL_BUDGET = 50_000_000


def _overlap_search_limit(n_candidates: int, n_cells: int) -> int:
    """Sub-searches allowed for `n_candidates` overlapping objects on a canvas of `n_cells` cells."""
    by_work = OVERLAP_SEARCH_CELL_BUDGET // max(1, n_candidates * n_cells)
    return max(OVERLAP_SEARCH_MIN_STEPS, min(OVERLAP_SEARCH_MAX_STEPS, by_work))


class _SearchLimitReached(Exception):
    pass


def _greedy_disjoint_subset(order: list[int], overlap: np.ndarray) -> list[int]:
    """The exact search's first leaf: each object in order unless it overlaps one already taken."""
    blocked = np.zeros(len(overlap), dtype=bool)
    chosen = []
    for index in order:
        if not blocked[index]:
            chosen.append(index)
            blocked |= overlap[index]
    return chosen


def _max_disjoint_subset(
    order: list[int], overlap: np.ndarray, sizes: np.ndarray, masks: np.ndarray, limit: int | None = None
) -> list[int]:
    """Indices (in `order`) of pairwise non-overlapping objects covering the most pixels.

    BARC's search: depth-first, taking each object before leaving it out, stopping
    as soon as the union of all candidates is covered; ties go to leaving the object
    out. The bound only skips branches that cannot win and the memo only reuses
    identical sub-searches, so the choice is BARC's, found faster.

    Bounded: after `limit` distinct sub-searches (default `_overlap_search_limit`), or
    a search deeper than the interpreter's stack, the answer is the greedy one,
    `_greedy_disjoint_subset`: the largest objects first, each kept unless it
    overlaps one already kept.
    """
    if limit is None:
        limit = _overlap_search_limit(len(order), masks.shape[1])
    order_arr = np.asarray(order, dtype=int)
    best_possible = int(np.sum(np.any(masks[order_arr], axis=0))) if order else 0
    memo: dict = {}
    started = [0]  # sub-searches begun, memoised or not yet

    def search(pos: int, blocked: np.ndarray, covered: int) -> tuple[tuple[int, ...], int]:
        while pos < len(order) and blocked[order[pos]]:
            pos += 1
        if pos == len(order):
            return (), covered
        # a sub-search depends only on where it starts, what it may still pick and the pixels so far
        key = (pos, covered, np.packbits(blocked[order_arr[pos:]]).tobytes())
        if key not in memo:
            started[0] += 1
            if started[0] > limit:
                raise _SearchLimitReached
            memo[key] = pick_or_skip(pos, blocked, covered)
        return memo[key]

    def pick_or_skip(pos: int, blocked: np.ndarray, covered: int) -> tuple[tuple[int, ...], int]:
        index = order[pos]
        picks, total = search(pos + 1, blocked | overlap[index], covered + int(sizes[index]))
        with_pick = ((index,) + picks, total)
        if total == best_possible:
            return with_pick
        rest = order_arr[pos + 1 :]
        free = rest[~blocked[rest]]
        bound = covered + (int(np.sum(np.any(masks[free], axis=0))) if len(free) else 0)
        if bound < total:
            return with_pick
        without_pick = search(pos + 1, blocked, covered)
        return with_pick if total > without_pick[1] else without_pick

    try:
        return list(search(0, np.zeros(len(sizes), dtype=bool), 0)[0])
    except (_SearchLimitReached, RecursionError):
        return _greedy_disjoint_subset(order, overlap)


def _resolve_overlaps(objects: list[np.ndarray], background: int) -> list[np.ndarray]:
    """Objects sorted by (cropped bbox area, pixel count) descending, keeping a non-overlapping set.

    Objects that overlap nothing are all kept (first); among the others a subset
    covering the most pixels is chosen.
    """
    def size_key(obj):
        _, _, w, h = bounding_box(obj, background)
        return (max(w, 0) * max(h, 0), int(np.sum(obj != background)))

    objects = sorted(objects, key=size_key, reverse=True)
    if not objects:
        return objects
    masks = np.stack([(obj != background).ravel() for obj in objects])
    # float32 so the product runs in BLAS (integer matmul does not); exact, as counts stay far below 2**24
    counts = masks.astype(np.float32)
    overlap = (counts @ counts.T) > 0
    np.fill_diagonal(overlap, False)
    sizes = masks.sum(axis=1)
    isolated = [i for i in range(len(objects)) if not overlap[i].any()]
    contested = [i for i in range(len(objects)) if overlap[i].any()]
    chosen = _max_disjoint_subset(contested, overlap, sizes, masks)
    return [objects[i] for i in isolated] + [objects[i] for i in chosen]


@_plain_args
def detect_objects(
    grid: np.ndarray,
    _=None,
    predicate: Callable[[np.ndarray], bool] | None = None,
    background: int = Color.BLACK,
    monochromatic: bool = False,
    connectivity: int | None = None,
    allowed_dimensions: list[tuple[int, int]] | None = None,
    colors: list[int] | None = None,
    can_overlap: bool = False,
) -> list[np.ndarray]:
    """Objects (full-canvas) found by connectivity and/or by scanning windows of allowed sizes.

    1. connectivity: connected components, kept if every cell is in `colors` or
       background, and predicate(crop(obj)) holds.
    2. allowed_dimensions: keep only objects whose full array shape is listed, then
       slide each (n, m) window over the grid; a window with a non-background cell
       that passes the colour rule and predicate(window) becomes an object unless
       identical to one found in step 1.
    3. Neither given: no objects.
    4. Unless can_overlap, resolve overlaps (see _resolve_overlaps): exactly as BARC,
       unless that search exceeds its step limit (_overlap_search_limit: busy 30x30
       grids with hundreds of overlapping windows), where the largest objects are
       kept greedily.
    """
    colors = _listed(colors)
    objects: list[np.ndarray] = []
    if connectivity:
        objects = find_connected_components(
            grid, background=background, connectivity=connectivity, monochromatic=monochromatic
        )
        if colors:
            objects = [obj for obj in objects if _only_colors(obj, colors, background)]
        if predicate:
            objects = [obj for obj in objects if predicate(crop(obj, background=background))]
    if allowed_dimensions:
        objects = [obj for obj in objects if obj.shape in allowed_dimensions]
        objects = objects + _scan_windows(grid, allowed_dimensions, background, colors, predicate, objects)
    if not can_overlap:
        objects = _resolve_overlaps(objects, background)
    return objects


def _exterior(grid: np.ndarray, background: int) -> np.ndarray:
    """Background cells 4-connected through background to the canvas edge."""
    labeled, _ = _ndimage().label(grid == background, _PLUS)
    edge_labels = np.unique(np.concatenate([labeled[0, :], labeled[-1, :], labeled[:, 0], labeled[:, -1]]))
    edge_labels = edge_labels[edge_labels > 0]
    return np.isin(labeled, edge_labels)


@_plain_args
def object_interior(grid: np.ndarray, background: int = Color.BLACK) -> np.ndarray:
    """Bool mask: the object's cells plus enclosed holes (everything but the exterior)."""
    return ~_exterior(grid, background)


@_plain_args
def object_boundary(grid: np.ndarray, background: int = Color.BLACK) -> np.ndarray:
    """Bool mask: non-background cells 4-adjacent to the exterior or on the canvas edge."""
    near_exterior = _ndimage().binary_dilation(_exterior(grid, background), structure=_PLUS)
    canvas_edge = np.zeros(grid.shape, dtype=bool)
    canvas_edge[[0, -1], :] = True
    canvas_edge[:, [0, -1]] = True
    return (grid != background) & (near_exterior | canvas_edge)


@_plain_args
def object_neighbors(grid: np.ndarray, background: int = Color.BLACK, connectivity: int = 4) -> np.ndarray:
    """Bool mask: background cells 4- (or 8-) adjacent to a boundary cell of the object."""
    ring = _structure(connectivity).copy()
    ring[1, 1] = False
    near_boundary = _ndimage().binary_dilation(object_boundary(grid, background), structure=ring)
    return near_boundary & (grid == background)


@_plain_args
def is_contiguous(bitmask: np.ndarray, background: int = Color.BLACK, connectivity: int = 4) -> bool:
    """True if the non-background cells form exactly one connected component."""
    _, count = _ndimage().label(bitmask != background, _structure(connectivity))
    return count == 1


# --------------------------------------------------------------------------- symmetry


def _as_int_coords(x, y):
    """Symmetry results as integers: arrays astype(int), floats int(round())."""
    if isinstance(x, np.ndarray):
        x = x.astype(int)
    elif isinstance(x, float):
        x = int(round(x))
    if isinstance(y, np.ndarray):
        y = y.astype(int)
    elif isinstance(y, float):
        y = int(round(y))
    return x, y


class Symmetry:
    """A grid symmetry; apply(x, y, iters) maps a point (or arrays of points)."""

    @_plain_args
    def apply(self, x, y, iters: int = 1):
        raise NotImplementedError

    def _iter_range(self, grid_shape) -> range:
        """The iteration counts `orbit` tries for this symmetry."""
        raise NotImplementedError


class TranslationalSymmetry(Symmetry):
    """(x, y) -> (x + iters * translate_x, y + iters * translate_y)."""

    @_plain_args
    def __init__(self, translate_x, translate_y):
        self.translate_x, self.translate_y = translate_x, translate_y

    @_plain_args
    def apply(self, x, y, iters: int = 1):
        return _as_int_coords(x + iters * self.translate_x, y + iters * self.translate_y)

    def _iter_range(self, grid_shape) -> range:
        k = 0  # enough repeats to cross the whole grid either way
        if self.translate_x != 0:
            k = math.ceil(grid_shape[0] / abs(self.translate_x))
        if self.translate_y != 0:
            k = max(k, math.ceil(grid_shape[1] / abs(self.translate_y)))
        return range(-k, k + 1)

    def __repr__(self):
        return f"TranslationalSymmetry(translate_x={self.translate_x}, translate_y={self.translate_y})"


class MirrorSymmetry(Symmetry):
    """Reflect x about mirror_x and/or y about mirror_y (None: that axis is kept).

    Even iters is the identity. Mirror lines may be half-integers.
    """

    @_plain_args
    def __init__(self, mirror_x, mirror_y):
        self.mirror_x, self.mirror_y = mirror_x, mirror_y

    @_plain_args
    def apply(self, x, y, iters: int = 1):
        if iters % 2 == 0:
            return x, y
        if self.mirror_x is not None:
            x = 2 * self.mirror_x - x
        if self.mirror_y is not None:
            y = 2 * self.mirror_y - y
        return _as_int_coords(x, y)

    def _iter_range(self, grid_shape) -> range:
        return range(0, 2)

    def __repr__(self):
        return f"MirrorSymmetry(mirror_x={self.mirror_x}, mirror_y={self.mirror_y})"


class RotationalSymmetry(Symmetry):
    """Quarter turns about (center_x, center_y): x' = cx + (y - cy), y' = cy - (x - cx).

    Negative iters is the identity.
    """

    @_plain_args
    def __init__(self, center_x, center_y):
        self.center_x, self.center_y = center_x, center_y

    @_plain_args
    def apply(self, x, y, iters: int = 1):
        x, y = x - self.center_x, y - self.center_y
        for _ in range(iters):
            x, y = y, -x
        return _as_int_coords(x + self.center_x, y + self.center_y)

    def _iter_range(self, grid_shape) -> range:
        return range(0, 4)

    def __repr__(self):
        return f"RotationalSymmetry(center_x={self.center_x}, center_y={self.center_y})"


def _score_symmetry(grid: np.ndarray, symmetry: Symmetry, ignore_colors, background=None) -> tuple[int, int, int]:
    """(perfect, off, bad) over occupied cells (not ignored, not background).

    perfect: maps onto an equal colour; off: maps off the canvas; bad: maps onto a
    different colour that is not ignored.
    """
    occupied = ~np.isin(grid, ignore_colors)
    if background is not None:
        occupied &= grid != background
    cells = np.argwhere(occupied)
    tx, ty = symmetry.apply(cells[:, 0], cells[:, 1])
    n, m = grid.shape
    inside = (tx >= 0) & (tx < n) & (ty >= 0) & (ty < m)
    cells, tx, ty = cells[inside], tx[inside], ty[inside]
    original = grid[cells[:, 0], cells[:, 1]]
    mapped = grid[tx, ty]
    perfect = int(np.sum(original == mapped))
    bad = int(np.sum((original != mapped) & ~np.isin(mapped, ignore_colors)))
    return perfect, int(np.sum(~inside)), bad


@_plain_args
def detect_translational_symmetry(grid: np.ndarray, ignore_colors=[Color.BLACK], background=None) -> list:
    """Best translation along x and best along y; if neither scores above 0, the best diagonal one.

    Score = perfect - 0.01 * off - 100000 * bad; ties prefer the more negative
    shift (BARC's tie-break).
    """
    n, m = grid.shape

    def scored(symmetries):
        result = []
        for sym in symmetries:
            perfect, off, bad = _score_symmetry(grid, sym, ignore_colors, background=background)
            score = perfect - 0.01 * off - 100000 * bad
            if score > 0:
                result.append((sym, score))
        return result

    x_shifts = [*range(1, n), *range(-1, -n, -1)]
    y_shifts = [*range(1, m), *range(-1, -m, -1)]
    x_only = scored(TranslationalSymmetry(t, 0) for t in x_shifts)
    y_only = scored(TranslationalSymmetry(0, t) for t in y_shifts)

    found = []
    if x_only:
        found.append(max(x_only, key=lambda item: (item[1], -item[0].translate_x))[0])
    if y_only:
        found.append(max(y_only, key=lambda item: (item[1], -item[0].translate_y))[0])
    if not found:
        diagonal = scored(TranslationalSymmetry(tx, ty) for tx in range(1, n) for ty in range(1, m))
        if diagonal:
            key = lambda item: (item[1], -item[0].translate_x - item[0].translate_y)
            found.append(max(diagonal, key=key)[0])
    return found


@_plain_args
def detect_mirror_symmetry(grid: np.ndarray, ignore_colors=[Color.BLACK], background=None) -> list:
    """All mirror symmetries tied for the best score perfect - 0.01 * off.

    Candidates with a bad mapping or no perfect mapping are rejected. Order: x-only,
    y-only, then both axes; lines at whole and half cells.
    """
    n, m = grid.shape
    x_only = [MirrorSymmetry(c + z, None) for c in range(n) for z in (0, 0.5)]
    y_only = [MirrorSymmetry(None, c + z) for c in range(m) for z in (0, 0.5)]
    both = [MirrorSymmetry(cx + z, cy + z) for cx in range(n) for cy in range(m) for z in (0, 0.5)]

    best, best_score = [], 0
    for sym in x_only + y_only + both:
        perfect, off, bad = _score_symmetry(grid, sym, ignore_colors, background=background)
        if bad > 0 or perfect == 0:
            continue
        score = perfect - 0.01 * off
        if score > best_score:
            best, best_score = [sym], score
        elif score == best_score:
            best.append(sym)
    return best


@_plain_args
def detect_rotational_symmetry(grid: np.ndarray, ignore_colors=[Color.BLACK], background=None):
    """The best quarter-turn symmetry, or None.

    Centres (cx + z, cy + z) for z in {0, 0.5}; score perfect - 5 * off - 1000 * bad;
    the first strictly best candidate scoring above 0 wins.
    """
    n, m = grid.shape
    best, best_score = None, 0
    for cx in range(n):
        for cy in range(m):
            for z in (0, 0.5):
                sym = RotationalSymmetry(cx + z, cy + z)
                perfect, off, bad = _score_symmetry(grid, sym, ignore_colors, background=background)
                score = perfect - 5 * off - 1000 * bad
                if score > best_score:
                    best, best_score = sym, score
    return best


@_plain_args
def orbit(grid: np.ndarray, x: int, y: int, symmetries) -> list[tuple[int, int]]:
    """All points reachable from (x, y) by applying each symmetry over its iteration range.

    Ranges: translation -k..k (k crosses the grid), mirror {0, 1}, rotation 0..3.
    The symmetries apply in order; a combination that leaves the grid at any step is
    dropped. The original point is included. Order is that of a set (unsorted).
    """
    if isinstance(symmetries, Symmetry):
        symmetries = [symmetries]
    ranges = [sym._iter_range(grid.shape) for sym in symmetries]
    points = []
    for iters in itertools.product(*ranges):
        px, py = x, y
        for sym, count in zip(symmetries, iters):
            px, py = sym.apply(px, py, count)
            if not _in_bounds(grid.shape, px, py):
                break
        else:
            points.append((px, py))
    return list(set(points))


# --------------------------------------------------------------------------- generators


@_plain_args
def random_free_location_for_sprite(
    grid: np.ndarray,
    sprite: np.ndarray,
    background: int = Color.BLACK,
    border_size: int = 0,
    padding: int = 0,
    padding_connectivity: int = 8,
) -> tuple[int, int]:
    """Random top-left (x, y) where the sprite's non-background cells miss every occupied cell.

    Occupied cells are dilated `padding` times (4- or 8-connected); the sprite stays
    `border_size` away from the edges. ValueError if there is no such place.
    """
    n, m = grid.shape
    sn, sm = sprite.shape
    occupied = grid != background
    if padding > 0:
        structure = _structure(padding_connectivity)
        occupied = _ndimage().binary_dilation(occupied, structure=structure, iterations=padding)
    solid = sprite != background
    free = [
        (x, y)
        for x in range(border_size, n + 1 - border_size - sn)
        for y in range(border_size, m + 1 - border_size - sm)
        if not np.any(occupied[x : x + sn, y : y + sm] & solid)
    ]
    if not free:
        raise ValueError("No free location for sprite found.")
    return random.choice(free)


random_free_location_for_object = random_free_location_for_sprite


@_plain_args
def randomly_spaced_indices(max_len: int, n_indices: int, border_size: int = 1, padding: int = 1) -> np.ndarray:
    """Sorted random indices in [border_size, max_len - border_size), any two more than `padding` apart.

    ValueError when repeated attempts cannot place them all.
    """
    candidates = list(range(border_size, max_len - border_size))
    # random picks can box themselves in although a spacing exists, so retry
    for _ in range(100):
        chosen: list[int] = []
        while len(chosen) < n_indices:
            options = [i for i in candidates if all(abs(i - c) > padding for c in chosen)]
            if not options:
                break
            chosen.append(random.choice(options))
        else:
            return np.array(sorted(chosen), dtype=int)
    raise ValueError("randomly_spaced_indices: not enough room for the indices.")


_SYMMETRY_TYPES = ["horizontal", "vertical", "not_symmetric", "mirror"]
_SQUARE_SYMMETRY_TYPES = ["diagonal", "radial"]


def _symmetric_images(sprite: np.ndarray, symmetry_type: str) -> list[np.ndarray]:
    """`sprite` under every element of the symmetry group of `symmetry_type` (identity first)."""
    if symmetry_type == "not_symmetric":
        return [sprite]
    if symmetry_type == "horizontal":  # mirror along x (axis 0)
        return [sprite, sprite[::-1, :]]
    if symmetry_type == "vertical":  # mirror along y (axis 1)
        return [sprite, sprite[:, ::-1]]
    if symmetry_type == "mirror":
        return [sprite, sprite[::-1, :], sprite[:, ::-1], sprite[::-1, ::-1]]
    if symmetry_type == "diagonal":
        return [sprite, sprite.T]
    if symmetry_type == "anti_diagonal":
        return [sprite, sprite[::-1, ::-1].T]
    if symmetry_type == "radial":
        return [np.rot90(sprite, k) for k in range(4)]
    raise ValueError(f"Invalid symmetry type {symmetry_type}.")


def _walk_start(n: int, m: int, symmetry_type: str) -> tuple[int, int]:
    """A start cell on the symmetry axis/centre, so the symmetric copies touch the walk."""
    cx, cy = (n - 1) // 2, (m - 1) // 2
    if symmetry_type == "horizontal":
        return cx, random.randrange(m)
    if symmetry_type == "vertical":
        return random.randrange(n), cy
    if symmetry_type in ("mirror", "radial"):
        return cx, cy
    if symmetry_type == "diagonal":
        i = random.randrange(n)
        return i, i
    if symmetry_type == "anti_diagonal":
        i = random.randrange(n)
        return i, n - 1 - i
    return random.randrange(n), random.randrange(m)


def _random_palette(background: int, max_colors: int = 9) -> list[int]:
    n_colors = 1
    while n_colors < max_colors and random.random() < 0.3:
        n_colors += 1
    return random.sample([c for c in Color.ALL_COLORS if c != background], n_colors)


@_plain_args
def generate_sprite(
    n: int,
    m: int,
    symmetry_type: str = "not_symmetric",
    fill_percentage: float = 0.5,
    max_colors: int = 9,
    color_palate: list[int] | None = None,
    connectivity: int = 4,
    background: int = Color.BLACK,
) -> np.ndarray:
    """One random-walk sprite of shape (n, m) with the given symmetry (contiguity not checked)."""
    color_palate = _listed(color_palate)
    palette = list(color_palate) if color_palate else _random_palette(background, max_colors)
    if symmetry_type == "diagonal":
        symmetry_type = random.choice(["diagonal", "anti_diagonal"])
    if symmetry_type in ("diagonal", "anti_diagonal", "radial") and n != m:
        raise ValueError(f"{symmetry_type} symmetry needs a square sprite.")
    moves = _neighbour_offsets(connectivity)

    walk = np.full((n, m), background)
    covered = np.zeros((n, m), dtype=bool)  # cells the symmetric sprite will fill
    x, y = _walk_start(n, m, symmetry_type)
    color = random.choice(palette)
    target = min(n * m, math.ceil(fill_percentage * n * m))
    while covered.sum() < target:
        if not covered[x, y]:
            dot = np.zeros((n, m), dtype=bool)
            dot[x, y] = True
            covered |= np.any(_symmetric_images(dot, symmetry_type), axis=0)
        walk[x, y] = color
        if random.random() < 0.33:
            color = random.choice(palette)
        dx, dy = random.choice(moves)
        if _in_bounds(walk.shape, x + dx, y + dy):
            x, y = x + dx, y + dy

    # each cell takes the largest colour over its orbit, so every copy agrees on it
    images = np.stack(_symmetric_images(walk, symmetry_type))
    strongest = np.where(images != background, images, -1).max(axis=0)
    return np.where(strongest >= 0, strongest, background)


def _flush_with_border(sprite: np.ndarray, background: int) -> bool:
    solid = sprite != background
    return bool(solid[0, :].any() and solid[-1, :].any() and solid[:, 0].any() and solid[:, -1].any())


@_plain_args
def random_sprite(
    n,
    m,
    density: float = 0.5,
    symmetry: str | None = None,
    color_palette: list[int] | None = None,
    connectivity: int = 4,
    background: int = Color.BLACK,
) -> np.ndarray:
    """A random contiguous sprite of shape (n, m) that touches all four of its edges.

    n, m: ints, or lists/ranges to pick from. symmetry: 'horizontal', 'vertical',
    'not_symmetric', 'mirror', 'diagonal', 'radial', or None for a random one
    (the last two only when a square shape is possible).
    """
    n, m = _listed(n), _listed(m)
    n_options = list(n) if isinstance(n, (list, tuple, range)) else [n]
    m_options = list(m) if isinstance(m, (list, tuple, range)) else [m]
    square_options = [(a, b) for a in n_options for b in m_options if a == b]
    if symmetry is None:
        symmetry = random.choice(_SYMMETRY_TYPES + (_SQUARE_SYMMETRY_TYPES if square_options else []))
    if symmetry in _SQUARE_SYMMETRY_TYPES:
        if not square_options:
            raise ValueError(f"{symmetry} symmetry needs a square sprite.")
        n, m = random.choice(square_options)
    else:
        n, m = random.choice(n_options), random.choice(m_options)

    if n == 1 or m == 1:
        density = 1.0
    elif min(n, m) <= 3:
        density = max(density, 0.6 if min(n, m) == 2 else 0.5)
    elif density < 1:
        density = max(0.4, min(0.95, random.gauss(density, 0.1)))

    for attempt in range(1000):
        # denser after repeated misses, so the loop always ends
        fill = min(1.0, density + 0.05 * (attempt // 20))
        sprite = generate_sprite(n, m, symmetry, fill, color_palate=_listed(color_palette),
                                 connectivity=connectivity, background=background)
        if is_contiguous(sprite, background=background, connectivity=connectivity) and _flush_with_border(sprite, background):
            return sprite
    raise ValueError("random_sprite: could not generate a sprite.")


@_plain_args
def show_colored_grid(grid: np.ndarray, text: bool = True) -> None:
    """Debug display in BARC; a no-op here so that stray calls in programs do no harm."""
    return None
