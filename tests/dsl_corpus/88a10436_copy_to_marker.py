from common import *

import numpy as np
from typing import *

# concepts:
# copying, centring on a marker
# description:
# There is a multicoloured shape and a single grey pixel. Copy the shape so that its centre lands on the
# grey pixel (the grey pixel disappears); the original shape stays.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    marker_x, marker_y = np.argwhere(input_grid == Color.GREY)[0]
    output_grid[marker_x, marker_y] = Color.BLACK

    shape = np.where(input_grid == Color.GREY, Color.BLACK, input_grid)
    sprite = crop(shape, background=Color.BLACK)
    w, h = sprite.shape
    blit_sprite(output_grid, sprite, marker_x - w // 2, marker_y - h // 2, background=Color.BLACK)
    return output_grid
