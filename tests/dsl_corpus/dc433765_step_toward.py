from common import *

import numpy as np
from typing import *

# concepts:
# translation, attraction
# description:
# A green pixel moves one step towards the yellow pixel (diagonally if needed).

def transform(input_grid):
    green_x, green_y = np.argwhere(input_grid == Color.GREEN)[0]
    yellow_x, yellow_y = np.argwhere(input_grid == Color.YELLOW)[0]
    dx, dy = np.sign(yellow_x - green_x), np.sign(yellow_y - green_y)

    green = np.where(input_grid == Color.GREEN, Color.GREEN, Color.BLACK)
    output_grid = np.where(input_grid == Color.GREEN, Color.BLACK, input_grid)
    blit_object(output_grid, translate(green, dx, dy, background=Color.BLACK))
    return output_grid
