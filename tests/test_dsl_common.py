"""Unit tests of the BARC DSL module `common` (spec: barc-induction-format.md, section 5).

Grids are small and hand-computed. x is numpy axis 0 everywhere.
"""

import importlib.util
import random as stdlib_random
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arc25.dsl import common
from arc25.dsl.common import Color

A = np.array


def cells(obj, background=0):
    """The set of (x, y) cells of an object that are not background."""
    return {tuple(int(v) for v in p) for p in np.argwhere(obj != background)}


# --------------------------------------------------------------------------- Color and import *


def test_color_values_and_aliases():
    expected = dict(BLACK=0, BLUE=1, RED=2, GREEN=3, YELLOW=4, GREY=5, GRAY=5, PINK=6, ORANGE=7,
                    TEAL=8, PURPLE=8, MAROON=9, BROWN=9, TRANSPARENT=0, BACKGROUND=0)
    for name, value in expected.items():
        assert getattr(Color, name) == value, name
        assert type(getattr(Color, name)) is int
    assert Color.ALL_COLORS == list(range(10))
    assert Color.NOT_BLACK == list(range(1, 10))


def test_color_is_a_plain_class_usable_in_arithmetic():
    import enum

    assert not isinstance(Color, enum.EnumMeta)
    assert Color.RED + 1 == Color.GREEN
    grid = np.zeros((2, 2), dtype=int)
    grid[0, 0] = Color.PURPLE
    assert grid[0, 0] == 8
    assert [Color.BROWN, Color.GRAY][0] == 9


EXPECTED_PUBLIC = {
    "np", "random", "Color",
    "flood_fill", "draw_line", "blit", "blit_sprite", "blit_object", "randomly_scatter_points",
    "random_scatter_points", "bounding_box", "bounding_box_mask", "crop", "object_position",
    "object_colors", "translate", "scale_sprite", "scale_pattern", "collision", "contact",
    "check_between_objects", "find_connected_components", "detect_objects", "object_interior",
    "object_boundary", "object_neighbors", "is_contiguous", "TranslationalSymmetry", "MirrorSymmetry",
    "detect_translational_symmetry", "detect_mirror_symmetry", "detect_rotational_symmetry", "orbit",
    "random_free_location_for_sprite", "random_free_location_for_object", "randomly_spaced_indices",
    "random_sprite", "generate_sprite",
}


def _star_import(module):
    namespace = {}
    saved = sys.modules.get("common")
    sys.modules["common"] = module
    try:
        exec("from common import *", namespace)
    finally:
        if saved is None:
            del sys.modules["common"]
        else:
            sys.modules["common"] = saved
    namespace.pop("__builtins__", None)
    return namespace


def test_star_import_exposes_np_random_color_and_every_function():
    namespace = _star_import(common)
    assert EXPECTED_PUBLIC <= set(namespace)
    assert namespace["np"] is np
    assert namespace["random"] is stdlib_random
    assert namespace["Color"].PURPLE == 8
    for name in EXPECTED_PUBLIC - {"np", "random", "Color"}:
        assert callable(namespace[name]), name


def test_star_import_hides_private_helpers_and_incidental_imports():
    namespace = _star_import(common)
    assert not [name for name in namespace if name.startswith("_")]
    for name in ("itertools", "math", "ndimage", "scipy", "Callable", "Iterable", "Sequence", "annotations"):
        assert name not in namespace, name
    assert set(common.__all__) == set(namespace)


def test_loads_by_file_path_as_common_and_runs_a_program():
    path = Path(common.__file__)
    source = path.read_text()
    assert "arc25" not in "".join(line for line in source.splitlines() if "import" in line)
    spec = importlib.util.spec_from_file_location("common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module is not common and module.Color is not common.Color
    program = (
        "from common import *\n"
        "def transform(input_grid):\n"
        "    out = np.copy(input_grid)\n"
        "    for obj in find_connected_components(input_grid, monochromatic=True):\n"
        "        x, y = object_position(obj)\n"
        "        draw_line(out, x, y, direction=(0, 1), color=Color.GRAY, stop_at_color=[Color.RED])\n"
        "    return out\n"
    )
    saved = sys.modules.get("common")
    sys.modules["common"] = module
    try:
        namespace = {}
        exec(program, namespace)
        result = namespace["transform"](A([[1, 0, 0], [0, 0, 2]]))
    finally:
        if saved is None:
            del sys.modules["common"]
        else:
            sys.modules["common"] = saved
    # the blue line runs to the edge; the red one starts on a stop colour and paints nothing
    np.testing.assert_array_equal(result, [[5, 5, 5], [0, 0, 2]])


# --------------------------------------------------------------------------- flood_fill


def test_flood_fill_4_vs_8_connectivity():
    grid = A([[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    g4 = grid.copy()
    assert common.flood_fill(g4, 0, 0, 2) is None
    np.testing.assert_array_equal(g4, [[2, 2, 0], [0, 2, 0], [0, 0, 1]])
    g8 = grid.copy()
    common.flood_fill(g8, 0, 0, 2, connectivity=8)
    np.testing.assert_array_equal(g8, [[2, 2, 0], [0, 2, 0], [0, 0, 2]])


def test_flood_fill_background_region_bounded_by_walls():
    grid = A([[0, 0, 5, 0], [0, 5, 0, 0], [5, 0, 0, 0]])
    common.flood_fill(grid, 0, 0, 3)
    np.testing.assert_array_equal(grid, [[3, 3, 5, 0], [3, 5, 0, 0], [5, 0, 0, 0]])
    common.flood_fill(grid, 2, 3, 4, connectivity=8)
    np.testing.assert_array_equal(grid, [[3, 3, 5, 4], [3, 5, 4, 4], [5, 4, 4, 4]])


def test_flood_fill_same_colour_is_a_no_op_and_bad_connectivity_asserts():
    grid = A([[1, 1], [1, 0]])
    common.flood_fill(grid, 0, 0, 1)
    np.testing.assert_array_equal(grid, [[1, 1], [1, 0]])
    with pytest.raises(AssertionError):
        common.flood_fill(grid, 0, 0, 2, connectivity=6)


def test_flood_fill_is_iterative_on_a_30x30_grid():
    grid = np.zeros((30, 30), dtype=int)
    grid[1:29:2, :29] = 1  # a long snake of background forces a deep fill
    common.flood_fill(grid, 0, 0, 7)
    assert np.all(grid[grid != 1] == 7)


# --------------------------------------------------------------------------- draw_line


def test_draw_line_direction_and_length_paints_along_axis_0():
    grid = np.zeros((4, 4), dtype=int)
    assert common.draw_line(grid, 0, 1, length=3, direction=(1, 0), color=2) == (2, 1)
    expected = np.zeros((4, 4), dtype=int)
    expected[0:3, 1] = 2
    np.testing.assert_array_equal(grid, expected)


def test_draw_line_end_point():
    grid = np.zeros((3, 3), dtype=int)
    assert common.draw_line(grid, 0, 0, end_x=2, end_y=2, color=1) == (2, 2)
    np.testing.assert_array_equal(grid, np.eye(3, dtype=int))


def test_draw_line_end_point_off_the_eight_rays_follows_the_sign_for_max_length():
    grid = np.zeros((5, 5), dtype=int)
    # direction (3, 1) -> (1, 1); length max(3, 1) + 1 = 4
    assert common.draw_line(grid, 0, 0, end_x=3, end_y=1, color=1) == (3, 3)
    assert cells(grid) == {(0, 0), (1, 1), (2, 2), (3, 3)}


def test_draw_line_end_point_going_backwards():
    grid = np.zeros((4, 4), dtype=int)
    assert common.draw_line(grid, 3, 2, end_x=3, end_y=0, color=6) == (3, 0)
    assert cells(grid) == {(3, 0), (3, 1), (3, 2)}


def test_draw_line_length_none_runs_to_the_edge():
    grid = np.zeros((5, 5), dtype=int)
    assert common.draw_line(grid, 1, 2, direction=(0, 1), color=4) == (1, 4)
    assert cells(grid) == {(1, 2), (1, 3), (1, 4)}
    grid = np.zeros((5, 5), dtype=int)
    assert common.draw_line(grid, 4, 4, direction=(-1, -1), color=4) == (0, 0)
    assert cells(grid) == {(i, i) for i in range(5)}


def test_draw_line_direction_is_reduced_to_its_sign():
    grid = np.zeros((4, 4), dtype=int)
    assert common.draw_line(grid, 0, 3, direction=(3, -2), color=1) == (3, 0)
    assert cells(grid) == {(0, 3), (1, 2), (2, 1), (3, 0)}


def test_draw_line_stop_at_color_stops_before_the_cell():
    grid = np.zeros((6, 2), dtype=int)
    grid[3, 0] = 2
    assert common.draw_line(grid, 0, 0, direction=(1, 0), color=1, stop_at_color=[2]) == (2, 0)
    np.testing.assert_array_equal(grid[:, 0], [1, 1, 1, 2, 0, 0])


def test_draw_line_overwrites_colours_not_in_stop_list():
    grid = A([[0, 3, 2, 0]])
    assert common.draw_line(grid, 0, 0, direction=(0, 1), color=1, stop_at_color=[2]) == (0, 1)
    np.testing.assert_array_equal(grid, [[1, 1, 2, 0]])


def test_draw_line_stop_colour_at_start_paints_nothing_and_returns_start():
    grid = A([[5, 0, 0]])
    assert common.draw_line(grid, 0, 0, direction=(0, 1), color=1, stop_at_color=[5]) == (0, 0)
    np.testing.assert_array_equal(grid, [[5, 0, 0]])


def test_draw_line_skips_out_of_bounds_points_without_wrapping():
    grid = np.zeros((3, 3), dtype=int)
    # points x = -2, -1 are skipped, then x = 0, 1 painted
    assert common.draw_line(grid, -2, 1, length=4, direction=(1, 0), color=3) == (1, 1)
    assert cells(grid) == {(0, 1), (1, 1)}


def test_draw_line_leaving_and_never_entering_returns_start():
    grid = np.zeros((3, 3), dtype=int)
    assert common.draw_line(grid, 10, 10, length=3, direction=(1, 1), color=3) == (10, 10)
    assert not grid.any()
    assert common.draw_line(grid, 1, 1, length=0, direction=(1, 1), color=3) == (1, 1)
    assert not grid.any()


def test_draw_line_argument_checks():
    grid = np.zeros((3, 3), dtype=int)
    with pytest.raises(AssertionError):
        common.draw_line(grid, 0, 0, end_x=2, color=1)
    with pytest.raises(AssertionError):
        common.draw_line(grid, 0.5, 0, direction=(1, 0), color=1)
    assert common.draw_line(grid, 1.0, 0, direction=(1, 0), color=1) == (2, 0)


# --------------------------------------------------------------------------- blit


def test_blit_copies_everything_without_background_and_returns_same_grid():
    grid = np.full((3, 3), 7)
    sprite = A([[1, 0], [0, 2]])
    out = common.blit(grid, sprite, 1, 1)
    assert out is grid
    np.testing.assert_array_equal(grid, [[7, 7, 7], [7, 1, 0], [7, 0, 2]])


def test_blit_sprite_background_is_transparent():
    grid = np.full((3, 3), 7)
    out = common.blit_sprite(grid, A([[1, 0], [0, 2]]), x=1, y=0)
    assert out is grid
    np.testing.assert_array_equal(grid, [[7, 7, 7], [1, 7, 7], [7, 2, 7]])
    grid = np.zeros((2, 2), dtype=int)
    common.blit_sprite(grid, A([[3, 3], [3, 4]]), 0, 0, background=3)
    np.testing.assert_array_equal(grid, [[0, 0], [0, 4]])


def test_blit_negative_offsets_are_skipped_not_wrapped():
    grid = np.zeros((3, 3), dtype=int)
    common.blit_sprite(grid, A([[1, 2], [3, 4]]), -1, -1)
    np.testing.assert_array_equal(grid, [[4, 0, 0], [0, 0, 0], [0, 0, 0]])
    grid = np.zeros((3, 3), dtype=int)
    common.blit(grid, A([[1, 2], [3, 4]]), x=-1, y=1)
    np.testing.assert_array_equal(grid, [[0, 3, 4], [0, 0, 0], [0, 0, 0]])


def test_blit_past_the_far_edge_and_fully_outside():
    grid = np.zeros((3, 3), dtype=int)
    common.blit_sprite(grid, A([[1, 2], [3, 4]]), 2, 2)
    np.testing.assert_array_equal(grid, [[0, 0, 0], [0, 0, 0], [0, 0, 1]])
    common.blit_sprite(grid, A([[5]]), 5, -4)
    np.testing.assert_array_equal(grid, [[0, 0, 0], [0, 0, 0], [0, 0, 1]])


def test_blit_truncates_float_positions():
    grid = np.zeros((3, 3), dtype=int)
    common.blit_sprite(grid, A([[6]]), 1.7, 2.2)
    assert cells(grid) == {(1, 2)}


def test_blit_object_keeps_position_and_background_transparent():
    grid = A([[1, 1], [1, 1]])
    obj = A([[0, 5], [0, 0]])
    assert common.blit_object(grid, obj) is grid
    np.testing.assert_array_equal(grid, [[1, 5], [1, 1]])


def test_randomly_scatter_points_paints_exactly_the_density():
    np.random.seed(0)
    grid = np.zeros((4, 4), dtype=int)
    grid[0, 0] = 2
    out = common.randomly_scatter_points(grid, Color.RED + 1, density=0.5)
    assert out is grid
    assert np.sum(grid == 3) == 8 and grid[0, 0] == 2
    assert common.random_scatter_points is common.randomly_scatter_points
    full = np.ones((2, 2), dtype=int)
    common.randomly_scatter_points(full, 4, density=1.0)  # must not loop forever
    assert np.all(full == 1)


# --------------------------------------------------------------------------- bounding_box and crop


def test_bounding_box_uses_axis_0_as_x_and_width():
    grid = np.zeros((5, 4), dtype=int)
    grid[1, 2] = 3
    grid[3, 1] = 4
    box = common.bounding_box(grid)
    assert box == (1, 1, 3, 2)
    assert all(type(v) is int for v in box)


def test_bounding_box_background_argument_and_single_cell():
    grid = np.full((3, 3), 5)
    grid[2, 0] = 1
    assert common.bounding_box(grid, background=5) == (2, 0, 1, 1)
    assert common.bounding_box(grid) == (0, 0, 3, 3)


def test_bounding_box_all_background():
    assert common.bounding_box(np.zeros((3, 4), dtype=int)) == (3, 4, -3, -4)


def test_bounding_box_mask():
    grid = np.zeros((4, 4), dtype=int)
    grid[1, 1] = grid[2, 3] = 1
    expected = np.zeros((4, 4), dtype=bool)
    expected[1:3, 1:4] = True
    mask = common.bounding_box_mask(grid)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)
    assert not common.bounding_box_mask(np.zeros((2, 2), dtype=int)).any()


def test_crop_returns_view_of_bounding_box():
    grid = A([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0]])
    sprite = common.crop(grid)
    np.testing.assert_array_equal(sprite, [[1, 0], [0, 2]])
    assert np.shares_memory(sprite, grid)
    np.testing.assert_array_equal(common.crop(A([[5, 5], [5, 3]]), background=5), [[3]])


def test_crop_all_background_has_shape_0_0():
    assert common.crop(np.zeros((3, 5), dtype=int)).shape == (0, 0)


# --------------------------------------------------------------------------- object_position and colours


@pytest.fixture
def tall_object():
    """bbox x=1, y=2, w=3, h=4 on a 6x7 canvas."""
    obj = np.zeros((6, 7), dtype=int)
    obj[1, 2] = 1
    obj[3, 5] = 1
    return obj


@pytest.mark.parametrize(
    "anchor, expected",
    [
        ("upper left", (1, 2)),
        ("upper right", (3, 2)),
        ("lower left", (1, 5)),
        ("lower right", (3, 5)),
        ("center", (2, 3.5)),
        ("upper center", (2, 2)),
        ("lower center", (2, 5)),
        ("left center", (1, 3.5)),
        ("right center", (3, 3.5)),
        ("top left", (1, 2)),
        ("Bottom Right", (3, 5)),
        ("TOP CENTER", (2, 2)),
        ("upperleft", (1, 2)),
    ],
)
def test_object_position_anchors(tall_object, anchor, expected):
    position = common.object_position(tall_object, anchor=anchor)
    assert position == expected
    for value, want in zip(position, expected):
        assert type(value) is type(want)


def test_object_position_default_is_upper_left_and_halves_stay_float():
    obj = np.zeros((5, 5), dtype=int)
    obj[1:3, 0:3] = 2  # w = 2, h = 3
    assert common.object_position(obj) == (1, 0)
    x, y = common.object_position(obj, anchor="center")
    assert (x, y) == (1.5, 1) and type(x) is float and type(y) is int
    obj9 = np.full((3, 3), 9)
    obj9[2, 2] = 4
    assert common.object_position(obj9, background=9, anchor="lower right") == (2, 2)


def test_object_position_invalid_anchor():
    with pytest.raises(AssertionError):
        common.object_position(np.ones((2, 2), dtype=int), anchor="middle")


def test_object_colors_excludes_background_in_set_order():
    obj = A([[0, 3, 3], [1, 0, 9]])
    colors = common.object_colors(obj)
    assert sorted(colors) == [1, 3, 9]
    assert colors == list(set(obj.flatten()) - {0})
    assert sorted(common.object_colors(obj, background=3)) == [0, 1, 9]
    assert common.object_colors(np.zeros((2, 2), dtype=int)) == []


# --------------------------------------------------------------------------- translate, scale, collision


def test_translate_moves_and_drops_pixels():
    obj = A([[1, 2], [3, 4]])
    np.testing.assert_array_equal(common.translate(obj, 1, 0), [[0, 0], [1, 2]])
    np.testing.assert_array_equal(common.translate(obj, 0, -1), [[2, 0], [4, 0]])
    np.testing.assert_array_equal(common.translate(obj, -1, 1), [[0, 3], [0, 0]])
    np.testing.assert_array_equal(common.translate(obj, 5, 5), [[0, 0], [0, 0]])
    np.testing.assert_array_equal(common.translate(obj, 1, 1, background=7), [[7, 7], [7, 1]])
    np.testing.assert_array_equal(obj, [[1, 2], [3, 4]])  # input untouched
    assert common.translate(obj, 0, 0) is not obj


def test_scale_sprite_and_scale_pattern(capsys):
    sprite = A([[1, 2]])
    expected = [[1, 1, 2, 2], [1, 1, 2, 2]]
    np.testing.assert_array_equal(common.scale_sprite(sprite, 2), expected)
    np.testing.assert_array_equal(common.scale_pattern(sprite, 2), expected)
    np.testing.assert_array_equal(common.scale_sprite(A([[3], [4]]), 3), [[3] * 3] * 3 + [[4] * 3] * 3)
    assert capsys.readouterr().out == ""


def test_collision_with_offsets():
    grid = np.zeros((3, 3), dtype=int)
    grid[1, 1] = 2
    dot = A([[5]])
    assert common.collision(object1=grid, object2=dot, x2=1, y2=1)
    assert not common.collision(object1=grid, object2=dot, x2=0, y2=1)
    assert common.collision(object1=dot, object2=grid, x1=1, y1=1)
    a = A([[1, 0], [0, 0]])
    b = A([[0, 0], [0, 1]])
    assert not common.collision(object1=a, object2=b)
    assert common.collision(object1=a, object2=b, x1=1, y1=1)
    assert common.collision(object1=a, object2=b, x2=-1, y2=-1)


def test_contact_4_and_8_connectivity():
    grid = np.zeros((3, 3), dtype=int)
    grid[1, 1] = 2
    dot = A([[5]])
    assert common.contact(object1=grid, object2=dot, x2=0, y2=1)
    assert common.contact(object1=grid, object2=dot, x2=1, y2=1)  # overlap counts
    assert not common.contact(object1=grid, object2=dot, x2=0, y2=0)
    assert common.contact(object1=grid, object2=dot, x2=0, y2=0, connectivity=8)
    assert not common.contact(object1=grid, object2=dot, x2=2, y2=3, connectivity=8)
    with pytest.raises(ValueError):
        common.contact(object1=grid, object2=dot, connectivity=5)


def test_check_between_objects_horizontal_gap():
    obj1 = np.zeros((7, 5), dtype=int)
    obj1[0:2, 1:4] = 1  # x 0..1, y 1..3
    obj2 = np.zeros((7, 5), dtype=int)
    obj2[5:7, 2:5] = 2  # x 5..6, y 2..4
    assert common.check_between_objects(obj1, obj2, 3, 2)
    assert common.check_between_objects(obj2, obj1, 4, 3)
    assert not common.check_between_objects(obj1, obj2, 3, 1)  # outside the shared band
    assert not common.check_between_objects(obj1, obj2, 1, 2)  # inside obj1's extent
    assert not common.check_between_objects(obj1, obj2, 3, 2, padding=1)
    assert not common.check_between_objects(obj1, obj2, 3, 3, padding=1)


def test_check_between_objects_vertical_gap():
    obj1 = np.zeros((6, 6), dtype=int)
    obj1[1:4, 0:2] = 1  # x 1..3, y 0..1
    obj2 = np.zeros((6, 6), dtype=int)
    obj2[2:5, 4:6] = 1  # x 2..4, y 4..5
    assert common.check_between_objects(obj1, obj2, 2, 2)
    assert common.check_between_objects(obj1, obj2, 3, 3)
    assert not common.check_between_objects(obj1, obj2, 1, 2)
    assert common.check_between_objects(obj1, obj2, 2, 3, padding=0)


# --------------------------------------------------------------------------- find_connected_components

COMPONENT_GRID = A(
    [
        [1, 1, 0, 2],
        [0, 0, 0, 2],
        [3, 0, 0, 1],
        [0, 3, 0, 0],
    ]
)


def _check_full_canvas(objects, grid, background=0):
    for obj in objects:
        assert obj.shape == grid.shape
        assert obj.dtype == grid.dtype
        on = obj != background
        np.testing.assert_array_equal(obj[on], grid[on])


def test_components_monochromatic_4():
    objects = common.find_connected_components(COMPONENT_GRID)
    _check_full_canvas(objects, COMPONENT_GRID)
    assert sorted(map(sorted, map(cells, objects))) == sorted(
        [[(0, 0), (0, 1)], [(2, 3)], [(0, 3), (1, 3)], [(2, 0)], [(3, 1)]]
    )
    # grouped by colour, in the order of set(grid) - {background}, raster order inside a colour
    colour_order = list(set(COMPONENT_GRID.flatten()) - {0})
    seen = [int(obj[obj != 0][0]) for obj in objects]
    assert seen == sorted(seen, key=colour_order.index)
    ones = [cells(o) for o in objects if 1 in o]
    assert ones == [{(0, 0), (0, 1)}, {(2, 3)}]


def test_components_monochromatic_8_keeps_colours_apart():
    objects = common.find_connected_components(COMPONENT_GRID, connectivity=8)
    assert sorted(map(sorted, map(cells, objects))) == sorted(
        [[(0, 0), (0, 1)], [(2, 3)], [(0, 3), (1, 3)], [(2, 0), (3, 1)]]
    )


def test_components_multicolour_8_in_raster_order():
    objects = common.find_connected_components(COMPONENT_GRID, connectivity=8, monochromatic=False)
    _check_full_canvas(objects, COMPONENT_GRID)
    assert [cells(o) for o in objects] == [
        {(0, 0), (0, 1)},
        {(0, 3), (1, 3), (2, 3)},
        {(2, 0), (3, 1)},
    ]
    np.testing.assert_array_equal(objects[1], [[0, 0, 0, 2], [0, 0, 0, 2], [0, 0, 0, 1], [0, 0, 0, 0]])


def test_components_multicolour_4_in_raster_order():
    objects = common.find_connected_components(COMPONENT_GRID, connectivity=4, monochromatic=False)
    assert [cells(o) for o in objects] == [{(0, 0), (0, 1)}, {(0, 3), (1, 3), (2, 3)}, {(2, 0)}, {(3, 1)}]


def test_components_multicolour_object_and_monochromatic_split():
    grid = A([[1, 2], [0, 0]])
    (obj,) = common.find_connected_components(grid, monochromatic=False)
    np.testing.assert_array_equal(obj, grid)
    assert len(common.find_connected_components(grid, monochromatic=True)) == 2


def test_components_non_zero_background():
    grid = A([[5, 5, 1], [0, 5, 1], [5, 5, 5]])
    objects = common.find_connected_components(grid, background=5, monochromatic=False)
    assert [cells(o, 5) for o in objects] == [{(0, 2), (1, 2)}, {(1, 0)}]
    np.testing.assert_array_equal(objects[1], [[5, 5, 5], [0, 5, 5], [5, 5, 5]])


def test_components_errors_and_empty():
    with pytest.raises(ValueError):
        common.find_connected_components(COMPONENT_GRID, connectivity=6)
    assert common.find_connected_components(np.zeros((3, 3), dtype=int)) == []


# --------------------------------------------------------------------------- detect_objects


def test_detect_objects_needs_connectivity_or_dimensions():
    assert common.detect_objects(COMPONENT_GRID) == []


def test_detect_objects_connectivity_sorted_by_area_then_mass():
    kept = common.detect_objects(COMPONENT_GRID, connectivity=8)
    # cropped areas: {(2,0),(3,1)} 2x2=4, {(0,3),(1,3),(2,3)} 3x1=3, {(0,0),(0,1)} 1x2=2
    assert [cells(o) for o in kept] == [{(2, 0), (3, 1)}, {(0, 3), (1, 3), (2, 3)}, {(0, 0), (0, 1)}]
    raw = common.detect_objects(COMPONENT_GRID, connectivity=8, can_overlap=True)
    assert [cells(o) for o in raw] == [{(0, 0), (0, 1)}, {(0, 3), (1, 3), (2, 3)}, {(2, 0), (3, 1)}]


def test_detect_objects_monochromatic_connectivity_4():
    objects = common.detect_objects(COMPONENT_GRID, connectivity=4, monochromatic=True)
    assert sorted(map(sorted, map(cells, objects))) == sorted(
        [[(0, 0), (0, 1)], [(2, 3)], [(0, 3), (1, 3)], [(2, 0)], [(3, 1)]]
    )


def test_detect_objects_colors_and_predicate_filters():
    by_colour = common.detect_objects(COMPONENT_GRID, connectivity=8, colors=[1, 2])
    assert [cells(o) for o in by_colour] == [{(0, 3), (1, 3), (2, 3)}, {(0, 0), (0, 1)}]
    shapes = []

    def predicate(sprite):
        shapes.append(sprite.shape)
        return sprite.shape == (2, 2)

    (only,) = common.detect_objects(COMPONENT_GRID, connectivity=8, predicate=predicate)
    assert cells(only) == {(2, 0), (3, 1)}
    assert sorted(shapes) == [(1, 2), (2, 2), (3, 1)]  # the predicate sees cropped sprites


WINDOW_GRID = A(
    [
        [1, 1, 0, 0],
        [0, 0, 0, 2],
        [0, 0, 0, 2],
    ]
)


def test_detect_objects_windows_with_overlap_allowed():
    objects = common.detect_objects(WINDOW_GRID, allowed_dimensions=[(1, 2)], can_overlap=True)
    for obj in objects:
        assert obj.shape == WINDOW_GRID.shape
    assert [cells(o) for o in objects] == [{(0, 0), (0, 1)}, {(0, 1)}, {(1, 3)}, {(2, 3)}]


def test_detect_objects_windows_resolve_overlap():
    objects = common.detect_objects(WINDOW_GRID, allowed_dimensions=[(1, 2)])
    # non-overlapping ones first (in size order), then the chosen overlapping ones
    assert [cells(o) for o in objects] == [{(1, 3)}, {(2, 3)}, {(0, 0), (0, 1)}]
    vertical = common.detect_objects(WINDOW_GRID, allowed_dimensions=[(2, 1)])
    assert [cells(o) for o in vertical] == [{(0, 0)}, {(0, 1)}, {(1, 3), (2, 3)}]


def test_detect_objects_windows_predicate_and_colors():
    solid = common.detect_objects(WINDOW_GRID, allowed_dimensions=[(1, 2)], predicate=lambda w: np.all(w != 0))
    assert [cells(o) for o in solid] == [{(0, 0), (0, 1)}]
    reds = common.detect_objects(WINDOW_GRID, allowed_dimensions=[(1, 2)], colors=[Color.RED], can_overlap=True)
    assert [cells(o) for o in reds] == [{(1, 3)}, {(2, 3)}]


def test_detect_objects_window_identical_to_component_is_not_duplicated():
    grid = A([[1, 1], [0, 0]])
    objects = common.detect_objects(grid, connectivity=4, allowed_dimensions=[(2, 2)], can_overlap=True)
    assert len(objects) == 1
    np.testing.assert_array_equal(objects[0], grid)


def test_detect_objects_allowed_dimensions_filter_component_by_full_shape():
    # components are full-canvas (4x4), so with dimensions [(1, 1)] only the 1x1 windows remain
    objects = common.detect_objects(COMPONENT_GRID, connectivity=4, allowed_dimensions=[(1, 1)], can_overlap=True)
    assert len(objects) == 7 and all(len(cells(o)) == 1 for o in objects)


def test_detect_objects_overlap_maximises_covered_pixels_not_greedy():
    grid = np.ones((1, 4), dtype=int)
    objects = common.detect_objects(grid, allowed_dimensions=[(1, 3), (1, 2)])
    # a greedy largest-first pick would keep one 1x3 window (3 pixels); two 1x2 cover all 4
    assert [cells(o) for o in objects] == [{(0, 0), (0, 1)}, {(0, 2), (0, 3)}]


def test_detect_objects_overlap_finds_full_cover_quickly():
    grid = np.ones((1, 5), dtype=int)
    objects = common.detect_objects(grid, allowed_dimensions=[(1, 3), (1, 2)])
    assert [cells(o) for o in objects] == [{(0, 0), (0, 1), (0, 2)}, {(0, 3), (0, 4)}]


def test_detect_objects_two_squares_by_window():
    grid = np.zeros((7, 7), dtype=int)
    grid[0:2, 0:2] = 3
    grid[4:6, 3:5] = 4
    objects = common.detect_objects(grid, allowed_dimensions=[(2, 2)])
    assert sorted(map(sorted, map(cells, objects))) == sorted(
        [[(0, 0), (0, 1), (1, 0), (1, 1)], [(4, 3), (4, 4), (5, 3), (5, 4)]]
    )


def _barc_max_disjoint_subset(order, overlap, sizes, masks):
    """BARC's overlap search, plainly: take-first depth-first, stop at full cover, ties leave the object out."""
    best_possible = int(np.any(masks[order], axis=0).sum()) if order else 0

    def search(pos, blocked, covered):
        while pos < len(order) and blocked[order[pos]]:
            pos += 1
        if pos == len(order):
            return (), covered
        index = order[pos]
        picks, total = search(pos + 1, blocked | overlap[index], covered + int(sizes[index]))
        if total == best_possible:
            return (index,) + picks, total
        without = search(pos + 1, blocked, covered)
        return ((index,) + picks, total) if total > without[1] else without

    return list(search(0, np.zeros(len(sizes), dtype=bool), 0)[0])


def _overlap_inputs(grid, dims):
    """What _resolve_overlaps hands to the search, for the windows of `dims` over `grid`."""
    objects = common._scan_windows(grid, dims, 0, None, None, [])
    area = lambda o: common.crop(o).size  # noqa: E731
    objects = sorted(objects, key=lambda o: (area(o), int(np.sum(o != 0))), reverse=True)  # as detect_objects does
    masks = np.stack([(o != 0).ravel() for o in objects])
    overlap = (masks.astype(int) @ masks.T.astype(int)) > 0
    np.fill_diagonal(overlap, False)
    contested = [i for i in range(len(objects)) if overlap[i].any()]
    return contested, overlap, masks.sum(axis=1), masks


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([[(1, 2)], [(2, 1)], [(2, 2)], [(1, 3)], [(1, 2), (2, 1)]]))
def test_detect_objects_bounded_search_is_barcs_choice_on_small_grids(seed, dims):
    rng = np.random.default_rng(seed)
    grid = np.where(rng.random((4, 4)) < 0.6, rng.integers(1, 4, (4, 4)), 0)
    if not grid.any():
        return
    order, overlap, sizes, masks = _overlap_inputs(grid, dims)
    assert common._max_disjoint_subset(order, overlap, sizes, masks) == _barc_max_disjoint_subset(
        order, overlap, sizes, masks)


@pytest.mark.timeout(60)  # a hang guard, not a speed assertion: the unbounded search ran for minutes here
def test_detect_objects_windows_on_a_busy_30x30_grid_finish_greedily():
    rng = np.random.default_rng(0)
    grid = np.where(rng.random((30, 30)) < 0.5, rng.integers(1, 10, (30, 30)), 0)
    objects = common.detect_objects(grid, allowed_dimensions=[(3, 3)])
    covered = np.zeros(grid.shape, dtype=int)
    for obj in objects:
        assert obj.shape == grid.shape
        covered += obj != 0
    assert covered.max() == 1  # still pairwise non-overlapping
    # past the search's step limit the choice is the greedy one: largest first, each kept unless it overlaps
    order, overlap, _, _ = _overlap_inputs(grid, [(3, 3)])
    assert len(order) > 700
    assert len(objects) == len(common._greedy_disjoint_subset(order, overlap))


def test_overlap_search_limit_shrinks_with_candidates_times_cells():
    assert common._overlap_search_limit(10, 16) == common.OVERLAP_SEARCH_MAX_STEPS
    assert common._overlap_search_limit(782, 900) == common.OVERLAP_SEARCH_MIN_STEPS  # 3x3 windows, busy 30x30
    assert common._overlap_search_limit(100, 100) == common.OVERLAP_SEARCH_CELL_BUDGET // 10_000
    assert common._overlap_search_limit(0, 0) == common.OVERLAP_SEARCH_MAX_STEPS


def test_max_disjoint_subset_falls_back_to_greedy_at_the_limit():
    grid = np.ones((1, 4), dtype=int)
    order, overlap, sizes, masks = _overlap_inputs(grid, [(1, 3), (1, 2)])
    exact = common._max_disjoint_subset(order, overlap, sizes, masks)
    assert common._max_disjoint_subset(order, overlap, sizes, masks, limit=1) == [order[0]] != exact
    assert sum(int(sizes[i]) for i in exact) == 4  # the exact search covers all four pixels


# --------------------------------------------------------------------------- topology


RING = A(
    [
        [0, 0, 0, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 1, 0, 1, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0],
    ]
)


def test_object_interior_includes_holes():
    expected = np.zeros((5, 5), dtype=bool)
    expected[1:4, 1:4] = True
    interior = common.object_interior(RING)
    assert interior.dtype == bool
    np.testing.assert_array_equal(interior, expected)


def test_object_interior_hole_closed_only_diagonally_is_still_enclosed():
    grid = A([[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0]])
    interior = common.object_interior(grid)
    assert interior[2, 1]
    assert cells(interior, False) == cells(grid) | {(2, 1)}


def test_object_boundary_thick_block_and_canvas_edge():
    grid = np.zeros((7, 7), dtype=int)
    grid[1:6, 1:6] = 2
    expected = grid != 0
    expected[2:5, 2:5] = False
    np.testing.assert_array_equal(common.object_boundary(grid), expected)
    full = np.ones((3, 3), dtype=int)
    expected = np.ones((3, 3), dtype=bool)
    expected[1, 1] = False
    np.testing.assert_array_equal(common.object_boundary(full), expected)


def test_object_boundary_excludes_cells_only_next_to_a_hole():
    grid = np.full((5, 5), 1)
    grid[2, 2] = 0
    grid = np.pad(grid, 1)
    boundary = common.object_boundary(grid)
    # the cells around the enclosed hole are interior, not boundary
    assert not boundary[2:5, 2:5].any()
    assert boundary[1, 1:6].all() and boundary[5, 1:6].all()


def test_object_neighbors_4_and_8():
    grid = np.zeros((5, 5), dtype=int)
    grid[2, 2] = 1
    assert cells(common.object_neighbors(grid), False) == {(1, 2), (3, 2), (2, 1), (2, 3)}
    eight = common.object_neighbors(grid, connectivity=8)
    assert cells(eight, False) == {(x, y) for x in range(1, 4) for y in range(1, 4)} - {(2, 2)}
    with pytest.raises(ValueError):
        common.object_neighbors(grid, connectivity=3)


def test_object_neighbors_include_enclosed_hole():
    neighbors = common.object_neighbors(RING)
    assert neighbors[2, 2]
    assert neighbors[0, 1] and not neighbors[0, 0] and not neighbors[1, 1]


def test_is_contiguous():
    diagonal = np.eye(3, dtype=int)
    assert not common.is_contiguous(diagonal)
    assert common.is_contiguous(diagonal, connectivity=8)
    assert common.is_contiguous(A([[1, 2], [0, 0]]))
    assert not common.is_contiguous(np.zeros((2, 2), dtype=int))
    assert common.is_contiguous(A([[4, 4], [4, 1]]), background=4)


# --------------------------------------------------------------------------- symmetry


def test_translational_symmetry_apply():
    sym = common.TranslationalSymmetry(2, -1)
    assert sym.apply(1, 3) == (3, 2)
    assert sym.apply(1, 3, iters=3) == (7, 0)
    assert sym.apply(1, 3, iters=-1) == (-1, 4)
    xs, ys = sym.apply(np.array([0, 1]), np.array([5, 5]))
    np.testing.assert_array_equal(xs, [2, 3])
    np.testing.assert_array_equal(ys, [4, 4])
    x, y = common.TranslationalSymmetry(0.5, 0).apply(1, 1, iters=2)
    assert (x, y) == (2, 1) and type(x) is int


def test_mirror_symmetry_apply():
    sym = common.MirrorSymmetry(1.5, None)
    x, y = sym.apply(0, 5)
    assert (x, y) == (3, 5) and type(x) is int
    assert sym.apply(0, 5, iters=2) == (0, 5)
    assert common.MirrorSymmetry(None, 2).apply(1, 1) == (1, 3)
    assert common.MirrorSymmetry(1, 0.5).apply(0, 0, iters=3) == (2, 1)


def test_rotational_symmetry_apply():
    sym = common.RotationalSymmetry(1, 1)
    assert sym.apply(0, 0) == (0, 2)
    assert sym.apply(0, 0, iters=2) == (2, 2)
    assert sym.apply(0, 0, iters=4) == (0, 0)
    assert sym.apply(0, 0, iters=-1) == (0, 0)
    x, y = common.RotationalSymmetry(1.5, 1.5).apply(0, 0)
    assert (x, y) == (0, 3) and type(x) is int


PINWHEEL = np.zeros((4, 4), dtype=int)
for _x, _y in [(0, 0), (0, 1), (0, 3), (1, 3), (3, 3), (3, 2), (3, 0), (2, 0)]:
    PINWHEEL[_x, _y] = 1


def test_detect_rotational_symmetry_half_integer_centre_and_orbit():
    sym = common.detect_rotational_symmetry(PINWHEEL)
    assert (sym.center_x, sym.center_y) == (1.5, 1.5)
    assert sym.apply(0, 0) == (0, 3)
    assert sorted(common.orbit(PINWHEEL, 0, 0, [sym])) == [(0, 0), (0, 3), (3, 0), (3, 3)]


def test_detect_rotational_symmetry_integer_centre_and_none():
    grid = A([[1, 2, 1], [2, 3, 2], [1, 2, 1]])
    sym = common.detect_rotational_symmetry(grid)
    assert (sym.center_x, sym.center_y) == (1, 1)
    assert common.detect_rotational_symmetry(np.zeros((3, 3), dtype=int)) is None
    assert common.detect_rotational_symmetry(A([[1, 2, 3]])) is None


def test_detect_rotational_symmetry_ignores_occluder_colour():
    grid = PINWHEEL.copy()
    grid[0, 0] = 2  # occluded
    sym = common.detect_rotational_symmetry(grid, ignore_colors=[0, 2])
    assert (sym.center_x, sym.center_y) == (1.5, 1.5)


def test_detect_mirror_symmetry():
    grid = A([[1, 2, 2, 1], [0, 3, 3, 0], [0, 0, 0, 0]])
    (sym,) = common.detect_mirror_symmetry(grid)
    assert (sym.mirror_x, sym.mirror_y) == (None, 1.5)
    assert sym.apply(0, 0) == (0, 3)
    assert common.detect_mirror_symmetry(np.zeros((2, 2), dtype=int)) == []


def test_detect_mirror_symmetry_returns_all_ties():
    grid = A([[1, 0, 1], [0, 0, 0], [1, 0, 1]])
    found = {(s.mirror_x, s.mirror_y) for s in common.detect_mirror_symmetry(grid)}
    assert found == {(1, None), (None, 1), (1, 1)}


def test_detect_translational_symmetry_along_y_prefers_negative_on_ties():
    grid = A([[1, 2, 1, 2, 1, 2], [3, 3, 3, 3, 3, 3]])
    (sym,) = common.detect_translational_symmetry(grid)
    assert (sym.translate_x, sym.translate_y) == (0, -2)
    assert sorted(common.orbit(grid, 0, 0, [sym])) == [(0, 0), (0, 2), (0, 4)]


def test_detect_translational_symmetry_both_axes_and_tiling_orbit():
    grid = np.tile(A([[1, 2], [3, 4]]), (2, 2))
    syms = common.detect_translational_symmetry(grid)
    assert [(s.translate_x, s.translate_y) for s in syms] == [(-2, 0), (0, -2)]
    assert sorted(common.orbit(grid, 0, 0, syms)) == [(0, 0), (0, 2), (2, 0), (2, 2)]


def test_detect_translational_symmetry_diagonal_fallback():
    (sym,) = common.detect_translational_symmetry(np.eye(3, dtype=int))
    assert (sym.translate_x, sym.translate_y) == (1, 1)
    assert common.detect_translational_symmetry(A([[1, 2, 3]])) == []


def test_orbit_drops_combinations_that_leave_the_grid():
    grid = np.zeros((5, 3), dtype=int)
    assert sorted(common.orbit(grid, 1, 0, [common.TranslationalSymmetry(2, 0)])) == [(1, 0), (3, 0)]
    strip = np.zeros((4, 1), dtype=int)
    syms = [common.TranslationalSymmetry(3, 0), common.TranslationalSymmetry(-2, 0)]
    # (3, 0) is only reachable through (5, 0), which is off the grid
    assert sorted(common.orbit(strip, 2, 0, syms)) == [(0, 0), (2, 0)]


def test_orbit_mirror_and_rotation_combined():
    grid = np.zeros((4, 4), dtype=int)
    mirror = common.MirrorSymmetry(1.5, None)
    assert sorted(common.orbit(grid, 0, 1, [mirror])) == [(0, 1), (3, 1)]
    rotation = common.RotationalSymmetry(1.5, 1.5)
    points = common.orbit(grid, 0, 1, [rotation, mirror])
    assert sorted(points) == sorted({(0, 1), (1, 3), (3, 2), (2, 0), (3, 1), (2, 3), (0, 2), (1, 0)})
    assert len(points) == len(set(points))


# --------------------------------------------------------------------------- generators


def test_random_free_location_for_sprite():
    stdlib_random.seed(0)
    grid = np.zeros((4, 4), dtype=int)
    grid[0:2, :] = 1
    sprite = A([[2, 2], [0, 2]])
    for _ in range(20):
        x, y = common.random_free_location_for_sprite(grid, sprite)
        assert x == 2 and 0 <= y <= 2
        assert not common.collision(object1=grid, object2=sprite, x2=x, y2=y)
    with pytest.raises(ValueError):
        common.random_free_location_for_sprite(grid, sprite, padding=1)
    assert common.random_free_location_for_object is common.random_free_location_for_sprite
    empty = np.zeros((5, 5), dtype=int)
    for _ in range(20):
        x, y = common.random_free_location_for_sprite(empty, np.ones((2, 2), dtype=int), border_size=1)
        assert x in (1, 2) and y in (1, 2)


def test_randomly_spaced_indices():
    stdlib_random.seed(1)
    for _ in range(20):
        indices = common.randomly_spaced_indices(12, 3, border_size=1, padding=2)
        assert len(indices) == 3 and list(indices) == sorted(indices)
        assert indices.min() >= 1 and indices.max() <= 10
        assert np.all(np.diff(indices) > 2)
    with pytest.raises(ValueError):
        common.randomly_spaced_indices(4, 5, border_size=0, padding=1)


@pytest.mark.parametrize(
    "symmetry, check",
    [
        ("horizontal", lambda s: np.array_equal(s, s[::-1, :])),
        ("vertical", lambda s: np.array_equal(s, s[:, ::-1])),
        ("mirror", lambda s: np.array_equal(s, s[::-1, :]) and np.array_equal(s, s[:, ::-1])),
        ("diagonal", lambda s: np.array_equal(s, s.T) or np.array_equal(s, s[::-1, ::-1].T)),
        ("radial", lambda s: np.array_equal(s, np.rot90(s))),
        ("not_symmetric", lambda s: True),
    ],
)
def test_random_sprite_symmetry_contiguity_and_edges(symmetry, check):
    stdlib_random.seed(3)
    np.random.seed(3)
    for _ in range(10):
        sprite = common.random_sprite(5, 5, symmetry=symmetry, color_palette=[Color.RED, Color.BLUE])
        assert sprite.shape == (5, 5)
        assert check(sprite)
        assert common.is_contiguous(sprite)
        assert set(np.unique(sprite)) <= {0, 1, 2}
        solid = sprite != 0
        assert solid[0].any() and solid[-1].any() and solid[:, 0].any() and solid[:, -1].any()


def test_random_sprite_dimension_choices_and_generate_sprite():
    stdlib_random.seed(4)
    for _ in range(10):
        sprite = common.random_sprite([2, 3], range(4, 6), background=Color.BLACK)
        assert sprite.shape[0] in (2, 3) and sprite.shape[1] in (4, 5)
    line = common.random_sprite(1, 4, color_palette=[Color.GREEN])
    np.testing.assert_array_equal(line, [[3, 3, 3, 3]])
    sprite = common.generate_sprite(4, 4, "not_symmetric", fill_percentage=0.5, color_palate=[7])
    assert sprite.shape == (4, 4) and np.sum(sprite == 7) >= 8
