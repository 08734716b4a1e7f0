from common import *

import numpy as np
from typing import *

# concepts:
# line drawing, alignment
# description:
# Connect teal cells that share a row or a column with teal lines.

def transform(input_grid):
    output_grid = input_grid.copy()
    points = np.argwhere(input_grid == Color.TEAL)
    for i, (x1, y1) in enumerate(points):
        for x2, y2 in points[i + 1:]:
            if x1 == x2 or y1 == y2:
                draw_line(output_grid, x1, y1, end_x=x2, end_y=y2, color=Color.TEAL)
    return output_grid
