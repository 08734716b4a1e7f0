from common import *

import numpy as np
from typing import *

# concepts:
# lines through centres, layering
# description:
# On a teal canvas there are blue square outlines. Pink lines run through the centre of every square,
# across the whole grid in both axes, passing under the blue outlines.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    background = Color.TEAL
    for square in find_connected_components(input_grid, background=background, connectivity=4):
        cx, cy = object_position(square, background=background, anchor="center")
        draw_line(output_grid, cx, 0, direction=(0, 1), color=Color.PINK)
        draw_line(output_grid, 0, cy, direction=(1, 0), color=Color.PINK)
    output_grid[input_grid == Color.BLUE] = Color.BLUE
    return output_grid
