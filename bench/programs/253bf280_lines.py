from common import *

import numpy as np
from typing import *

# concepts:
# line drawing
# description:
# Connect teal cells in the same row or column with green lines, keeping the teal ends.

def transform(input_grid):
    output_grid = input_grid.copy()
    points = [tuple(p) for p in np.argwhere(input_grid == Color.TEAL)]
    for i, (x1, y1) in enumerate(points):
        for x2, y2 in points[i + 1:]:
            if x1 == x2 or y1 == y2:
                draw_line(output_grid, x1, y1, end_x=x2, end_y=y2, color=Color.GREEN, stop_at_color=[])
    for x, y in points:
        output_grid[x, y] = Color.TEAL
    return output_grid
