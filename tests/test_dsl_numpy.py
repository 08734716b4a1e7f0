"""Differential test: every public DSL function behaves the same for Python and numpy arguments.

BARC programs take coordinates from np.argwhere / np.where / .shape and colours from
grid cells, so their integer arguments are mostly np.int64 (or np.int32, np.intp, a
0-d array) and their flags numpy bools. Each case below draws one random call (with
hypothesis) whose numeric leaves are marked `Num`, `Real` or `Flag`; the call runs
once with those leaves as Python values and once with each leaf turned into a
randomly chosen numpy type. Return values, the arrays the call mutated, and raised
exceptions (type and message) must be identical, down to types and dtypes.

`test_every_public_function_has_a_case` enumerates `common.__all__`, so a new public
function without a case fails the suite instead of going untested.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arc25.dsl import common as dsl

# Modest: the test machines are small. Each example runs its call twice.
EXAMPLES = 40
NOT_CALLABLE = {"np", "random", "Color"}  # exported names that are not DSL functions


# --------------------------------------------------------------------------- call specs


@dataclass(frozen=True)
class Num:
    """An integer argument: a coordinate, length, colour, connectivity, factor..."""

    value: int


@dataclass(frozen=True)
class Real:
    """A float argument (density, half-integer mirror line)."""

    value: float


@dataclass(frozen=True)
class Flag:
    """A boolean argument."""

    value: bool


@dataclass(frozen=True)
class Ints:
    """A list of integers (colours, sizes): numpy gives it as a 1-d array or as a list of numpy scalars."""

    values: tuple[int, ...]


@dataclass(frozen=True)
class Make:
    """An object built from realised arguments (a Symmetry passed to `orbit` or `apply`)."""

    factory: Callable
    args: tuple = ()


def _int_kinds(value: int) -> list[Callable]:
    kinds = [np.int64, np.int32, np.intp, lambda v: np.array(v), lambda v: np.array(v, dtype=np.int32)]
    if 0 <= value <= 255:
        kinds.append(np.uint8)  # colours read from a uint8 grid
    return kinds


REAL_KINDS = [np.float64, np.float32, lambda v: np.array(v)]
FLAG_KINDS = [np.bool_, lambda v: np.array(v)]


def realize(spec: Any, data: st.DataObject | None) -> Any:
    """The Python value of a spec (data None), or a numpy version with kinds drawn from `data`."""
    if isinstance(spec, Num):
        return spec.value if data is None else data.draw(st.sampled_from(_int_kinds(spec.value)))(spec.value)
    if isinstance(spec, Real):
        # drawn so that float32 holds them exactly (halves, k / 32): a float32 of 1 / 20 is another number
        # (0.0500000007), and the DSL rightly takes the value it is given (20 cells: 2 points, not 1)
        return spec.value if data is None else data.draw(st.sampled_from(REAL_KINDS))(spec.value)
    if isinstance(spec, Flag):
        return spec.value if data is None else data.draw(st.sampled_from(FLAG_KINDS))(spec.value)
    if isinstance(spec, Ints):
        if data is None:
            return list(spec.values)
        as_array = data.draw(st.sampled_from([None, np.int64, np.int32]))
        if as_array is not None:
            return np.array(spec.values, dtype=as_array)
        return [realize(Num(v), data) for v in spec.values]
    if isinstance(spec, Make):
        return spec.factory(*realize(spec.args, data))
    if isinstance(spec, np.ndarray):
        return spec.copy()  # every run gets its own grid: many functions paint in place
    if isinstance(spec, list):
        return [realize(s, data) for s in spec]
    if isinstance(spec, tuple):
        return tuple(realize(s, data) for s in spec)
    if isinstance(spec, dict):
        return {k: realize(v, data) for k, v in spec.items()}
    return spec


def _grids(spec: Any, value: Any) -> list[np.ndarray]:
    """The grids (arrays in the spec) among realised arguments, to compare after the call: some paint in place."""
    if isinstance(spec, np.ndarray):
        return [value]
    if isinstance(spec, (list, tuple)):
        return [g for s, v in zip(spec, value) for g in _grids(s, v)]
    if isinstance(spec, dict):
        return [g for k in spec for g in _grids(spec[k], value[k])]
    return []


def outcome(fn: Callable, args: tuple, kwargs: dict, data: st.DataObject | None) -> tuple:
    """('ok', result, mutated arrays) or ('raised', type, message), with both random streams seeded."""
    specs = (args, kwargs)
    args, kwargs = realize(args, data), realize(kwargs, data)
    random.seed(1234)
    np.random.seed(1234)
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # the exceptions themselves are what we compare
        return ("raised", type(exc), str(exc))
    return ("ok", result, _grids(specs, (args, kwargs)))


def assert_same(a: Any, b: Any, where: str = "result") -> None:
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__} ({a!r} vs {b!r})"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dsl.Symmetry):
        assert_same(vars(a), vars(b), where)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# --------------------------------------------------------------------------- strategies

cells = st.sampled_from([0, 0, 0, 1, 2, 3, 5, 8])  # background-heavy, few colours: objects form


@st.composite
def grids(draw, max_side: int = 7, min_side: int = 1) -> np.ndarray:
    n = draw(st.integers(min_side, max_side))
    m = draw(st.integers(min_side, max_side))
    return np.array(draw(st.lists(cells, min_size=n * m, max_size=n * m)), dtype=np.int64).reshape(n, m)


colors = st.integers(0, 9).map(Num)
coords = st.integers(-3, 9).map(Num)
small = st.integers(0, 3).map(Num)
connectivities = st.sampled_from([4, 8, 4, 8, 5]).map(Num)  # 5: the error path
flags = st.booleans().map(Flag)
def int_lists(low: int, high: int, min_size: int = 0, max_size: int = 4) -> st.SearchStrategy:
    return st.lists(st.integers(low, high), min_size=min_size, max_size=max_size).map(lambda v: Ints(tuple(v)))


color_lists = st.one_of(
    int_lists(0, 9),
    st.lists(colors, max_size=4),
    st.lists(colors, max_size=4).map(tuple),
    colors,  # a single colour where a list is expected: accepted
)
anchors = st.sampled_from(["upper left", "upper right", "lower left", "lower right", "center",
                           "top center", "bottom center", "left center", "right center", "middle"])


def call(*args, **kwargs) -> st.SearchStrategy:
    """A strategy for (args, kwargs): each argument may itself be a strategy."""
    def lift(x):
        return x if isinstance(x, st.SearchStrategy) else st.just(x)
    return st.tuples(st.tuples(*map(lift, args)), st.fixed_dictionaries({k: lift(v) for k, v in kwargs.items()}))


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


directions = st.one_of(
    st.tuples(st.integers(-2, 2).map(Num), st.integers(-2, 2).map(Num)),
    st.lists(st.integers(-1, 1).map(Num), min_size=2, max_size=2),
)
draw_line_calls = st.one_of(
    call(grids(), coords, coords, end_x=coords, end_y=coords, color=colors, stop_at_color=color_lists),
    call(grids(), coords, coords, direction=directions, length=optional(small), color=colors,
         stop_at_color=color_lists),
    call(grids(), coords, coords, end_x=coords, color=colors),  # AssertionError: end_y missing
    call(grids(), coords, coords, color=colors),  # ValueError: neither direction nor end point
)


@st.composite
def two_grids(draw, same_shape: bool = False) -> tuple[np.ndarray, np.ndarray]:
    first = draw(grids(max_side=6))
    second = draw(grids(max_side=6, min_side=1)) if not same_shape else np.array(
        draw(st.lists(cells, min_size=first.size, max_size=first.size)), dtype=np.int64).reshape(first.shape)
    return first, second


@st.composite
def blit_calls(draw, name: str) -> tuple:
    grid, sprite = draw(two_grids(same_shape=name == "blit_object"))
    if name == "blit":
        return draw(call(grid, sprite, x=coords, y=coords, background=optional(colors)))
    if name == "blit_sprite":
        return draw(call(grid, sprite, coords, coords, background=colors))
    return draw(call(grid, sprite, background=colors))


@st.composite
def pair_calls(draw, name: str) -> tuple:
    first, second = draw(two_grids())
    kwargs = dict(object1=first, object2=second, x1=coords, y1=coords, x2=coords, y2=coords, background=colors)
    if name == "contact":
        kwargs["connectivity"] = connectivities
    return draw(call(**kwargs))


@st.composite
def between_calls(draw) -> tuple:
    first, second = draw(two_grids(same_shape=True))
    return draw(call(first, second, coords, coords, padding=small, background=colors))


detect_calls = call(
    grids(max_side=6),
    predicate=st.sampled_from([None, lambda sprite: sprite.shape[0] * sprite.shape[1] >= 2]),
    background=colors,
    monochromatic=flags,
    connectivity=optional(st.sampled_from([4, 8]).map(Num)),
    allowed_dimensions=optional(st.lists(st.tuples(st.integers(1, 3).map(Num), st.integers(1, 3).map(Num)),
                                         min_size=1, max_size=2)),
    colors=optional(int_lists(0, 9, min_size=1, max_size=3)),
    can_overlap=flags,
)

halves = st.integers(-2, 16).map(lambda k: Real(k / 2))
symmetries = st.one_of(
    st.builds(lambda x, y: Make(dsl.TranslationalSymmetry, (x, y)), st.integers(-3, 3).map(Num),
              st.integers(-3, 3).map(Num)),
    st.builds(lambda x, y: Make(dsl.MirrorSymmetry, (x, y)), optional(st.one_of(coords, halves)),
              optional(st.one_of(coords, halves))),
    st.builds(lambda x, y: Make(dsl.RotationalSymmetry, (x, y)), st.one_of(coords, halves),
              st.one_of(coords, halves)),
)
fractions = st.integers(1, 32).map(lambda k: Real(k / 32))  # float32 holds k / 32 exactly, not k / 20
sizes = st.integers(1, 4).map(Num)
symmetry_names = st.sampled_from([None, "horizontal", "vertical", "not_symmetric", "mirror", "diagonal", "radial"])
sprite_kwargs = dict(connectivity=st.sampled_from([4, 8]).map(Num), background=colors)


def apply_case(symmetry: st.SearchStrategy) -> st.SearchStrategy:
    return call(lambda sym, x, y, iters: sym.apply(x, y, iters), symmetry, coords, coords, st.integers(-1, 4).map(Num))


# name -> strategy of (args, kwargs); args[0] is the function unless the name is a DSL function
CASES: dict[str, st.SearchStrategy] = {
    "flood_fill": call(grids(), coords, coords, colors, connectivity=connectivities),
    "draw_line": draw_line_calls,
    "blit": blit_calls("blit"),
    "blit_sprite": blit_calls("blit_sprite"),
    "blit_object": blit_calls("blit_object"),
    "randomly_scatter_points": call(grids(), colors, density=fractions, background=colors),
    "random_scatter_points": call(grids(), colors, density=fractions, background=colors),
    "bounding_box": call(grids(), background=colors),
    "bounding_box_mask": call(grids(), background=colors),
    "crop": call(grids(), background=colors),
    "object_position": call(grids(), background=colors, anchor=anchors),
    "object_colors": call(grids(), background=colors),
    "translate": call(grids(), coords, coords, background=colors),
    "scale_sprite": call(grids(max_side=4), st.integers(1, 3).map(Num)),
    "scale_pattern": call(grids(max_side=4), st.integers(1, 3).map(Num)),
    "collision": pair_calls("collision"),
    "contact": pair_calls("contact"),
    "check_between_objects": between_calls(),
    "find_connected_components": call(grids(), background=colors, connectivity=connectivities, monochromatic=flags),
    "detect_objects": detect_calls,
    "object_interior": call(grids(), background=colors),
    "object_boundary": call(grids(), background=colors),
    "object_neighbors": call(grids(), background=colors, connectivity=st.sampled_from([4, 8]).map(Num)),
    "is_contiguous": call(grids(), background=colors, connectivity=connectivities),
    "Symmetry": call(lambda sym, x, y: sym.apply(x, y), Make(dsl.Symmetry), coords, coords),
    "TranslationalSymmetry": apply_case(symmetries.filter(lambda m: m.factory is dsl.TranslationalSymmetry)),
    "MirrorSymmetry": apply_case(symmetries.filter(lambda m: m.factory is dsl.MirrorSymmetry)),
    "RotationalSymmetry": apply_case(symmetries.filter(lambda m: m.factory is dsl.RotationalSymmetry)),
    "detect_translational_symmetry": call(grids(max_side=6), ignore_colors=int_lists(0, 9, max_size=2),
                                          background=optional(colors)),
    "detect_mirror_symmetry": call(grids(max_side=5), ignore_colors=int_lists(0, 9, max_size=2),
                                   background=optional(colors)),
    "detect_rotational_symmetry": call(grids(max_side=6), ignore_colors=int_lists(0, 9, max_size=2),
                                       background=optional(colors)),
    "orbit": call(grids(), coords, coords, st.one_of(symmetries, st.lists(symmetries, max_size=2))),
    "random_free_location_for_sprite": call(grids(), grids(max_side=3), background=colors, border_size=small,
                                            padding=small, padding_connectivity=st.sampled_from([4, 8]).map(Num)),
    "random_free_location_for_object": call(grids(), grids(max_side=3), background=colors, border_size=small,
                                            padding=small),
    "randomly_spaced_indices": call(st.integers(0, 15).map(Num), st.integers(0, 4).map(Num), border_size=small,
                                    padding=small),
    "random_sprite": call(st.one_of(sizes, st.lists(sizes, min_size=1, max_size=3), int_lists(1, 4, 1, 3)), sizes,
                          density=fractions.filter(lambda r: r.value >= 0.3), symmetry=symmetry_names,
                          color_palette=optional(int_lists(1, 9, min_size=1, max_size=3)),
                          **sprite_kwargs),
    "generate_sprite": call(sizes, sizes, symmetry_type=st.sampled_from(
                                ["not_symmetric", "horizontal", "vertical", "mirror", "diagonal", "radial", "bogus"]),
                            fill_percentage=fractions, max_colors=st.integers(1, 9).map(Num),
                            color_palate=optional(int_lists(1, 9, min_size=1, max_size=3)),
                            **sprite_kwargs),
    "show_colored_grid": call(grids(), text=flags),
}
METHOD_CASES = {"Symmetry", "TranslationalSymmetry", "MirrorSymmetry", "RotationalSymmetry"}


# --------------------------------------------------------------------------- tests


def test_every_public_function_has_a_case():
    public = {name for name in dsl.__all__ if name not in NOT_CALLABLE}
    assert all(callable(getattr(dsl, name)) for name in public)
    assert public - set(CASES) == set(), "public DSL functions without a differential case"
    assert set(CASES) - public == set(), "cases for names the DSL does not export"
    # and nothing public escapes __all__ (a function added but not exported would not be reached by programs)
    defined_here = {name for name, obj in vars(dsl).items()
                    if not name.startswith("_") and callable(obj) and getattr(obj, "__module__", None) == dsl.__name__}
    assert defined_here - public - NOT_CALLABLE == set()


@pytest.mark.parametrize("name", sorted(CASES))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_python_and_numpy_arguments_agree(name, data):
    args, kwargs = data.draw(CASES[name], label="call")
    fn = args[0] if name in METHOD_CASES else getattr(dsl, name)
    args = args[1:] if name in METHOD_CASES else args
    expected = outcome(fn, args, kwargs, None)
    got = outcome(fn, args, kwargs, data)
    assert expected[0] == got[0], f"{name}: with Python arguments {expected[:3]!r}, with numpy ones {got[:3]!r}"
    assert_same(expected, got, name)


# --------------------------------------------------------------------------- the reported failures, named


def test_draw_line_with_numpy_end_point_as_in_the_issue():
    grid = np.zeros((5, 5), dtype=int)
    stop = dsl.draw_line(grid, 3, 3, end_x=np.int64(3), end_y=np.int64(0), color=dsl.Color.TEAL)
    assert stop == (3, 0) and type(stop[0]) is int
    assert grid[3].tolist() == [8, 8, 8, 8, 0]


def test_draw_line_with_a_numpy_direction_and_stop_colour_from_the_grid():
    grid = np.zeros((5, 5), dtype=np.int64)
    grid[0, 4] = 2
    x, y = np.argwhere(grid == 2)[0]
    assert dsl.draw_line(grid, np.int64(4), np.int64(0), direction=np.array([-1, 1]), color=grid[x, y] + 1,
                         stop_at_color=grid[x, y]) == (1, 3)
    assert [grid[i, 4 - i] for i in range(5)] == [2, 3, 3, 3, 3]


def test_scatter_density_is_the_value_given_float32_or_not():
    """A float32 of 1/20 is 0.0500000007: on 20 cells it asks for ceil(1.0000000149) = 2 points, as BARC's own loop
    (`while colored < density * n * m`) paints; the Python 0.05 asks for 1. k / 32 is the same number in both."""
    painted = lambda density: int(np.sum(dsl.random_scatter_points(np.zeros((4, 5), dtype=int), 3, density) == 3))
    assert (painted(0.05), painted(np.float32(0.05)), painted(float(np.float32(0.05)))) == (1, 2, 2)
    assert painted(np.float32(3 / 32)) == painted(3 / 32) == 2


def test_colour_from_a_0d_array_as_background():
    grid = np.array([[0, 1], [2, 0]])
    background = np.array(0)
    assert sorted(dsl.object_colors(grid, background=background)) == [1, 2]
    assert len(dsl.find_connected_components(grid, background=background)) == 2


def test_symmetry_results_are_python_ints_for_numpy_parameters():
    sym = dsl.TranslationalSymmetry(np.int64(2), np.int32(0))
    assert dsl.orbit(np.zeros((4, 1)), np.int64(0), np.intp(0), sym) in ([(0, 0), (2, 0)], [(2, 0), (0, 0)])
    assert all(type(v) is int for v in sym.apply(np.int64(1), 1))
