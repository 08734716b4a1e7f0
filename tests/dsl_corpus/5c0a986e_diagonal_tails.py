from common import *

import numpy as np
from typing import *

# concepts:
# diagonal lines, objects
# description:
# There is a blue 2x2 square and a red 2x2 square. The blue square shoots a blue diagonal line away from
# its upper-left corner (towards smaller x and y); the red one a red diagonal from its lower-right corner.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    blue_x, blue_y, _, _ = bounding_box(input_grid == Color.BLUE, background=False)
    draw_line(output_grid, blue_x - 1, blue_y - 1, direction=(-1, -1), color=Color.BLUE)

    red_x, red_y, width, height = bounding_box(input_grid == Color.RED, background=False)
    draw_line(output_grid, red_x + width, red_y + height, direction=(1, 1), color=Color.RED)
    return output_grid
