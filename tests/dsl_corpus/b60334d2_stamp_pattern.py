from common import *

import numpy as np
from typing import *

# concepts:
# pattern stamping
# description:
# Every grey pixel is replaced by a 3x3 stamp centred on it: grey corners, blue edges and an empty centre.

def transform(input_grid):
    output_grid = np.zeros_like(input_grid)
    stamp = np.array([[Color.GREY, Color.BLUE, Color.GREY],
                      [Color.BLUE, Color.BLACK, Color.BLUE],
                      [Color.GREY, Color.BLUE, Color.GREY]])
    xs, ys = np.where(input_grid == Color.GREY)
    for x, y in zip(xs, ys):
        blit_sprite(output_grid, stamp, x=x - 1, y=y - 1, background=Color.BLACK)
    return output_grid
