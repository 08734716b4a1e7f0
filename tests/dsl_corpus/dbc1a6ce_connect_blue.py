from common import *

import numpy as np
from typing import *

# concepts:
# lines, alignment
# description:
# Blue pixels that share a row or a column are joined by teal lines; the blue pixels stay blue.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    points = np.argwhere(input_grid == Color.BLUE)
    for i, (x1, y1) in enumerate(points):
        for x2, y2 in points[i + 1:]:
            if x1 == x2 or y1 == y2:
                draw_line(output_grid, x1, y1, end_x=x2, end_y=y2, color=Color.TEAL)
    output_grid[input_grid == Color.BLUE] = Color.BLUE
    return output_grid
