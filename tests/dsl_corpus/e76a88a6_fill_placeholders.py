from common import *

import numpy as np
from typing import *

# concepts:
# copying, placeholders
# description:
# One multicoloured pattern and several grey rectangles of the same size. Each grey rectangle is replaced
# by a copy of the pattern.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    pattern = crop(np.where(input_grid == Color.GREY, Color.BLACK, input_grid))

    placeholders = find_connected_components(input_grid == Color.GREY, background=False, connectivity=4)
    for placeholder in placeholders:
        x, y = np.argwhere(placeholder).min(axis=0)
        blit_sprite(output_grid, pattern, x, y)
    return output_grid
