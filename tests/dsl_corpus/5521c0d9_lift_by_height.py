from common import *

import numpy as np
from typing import *

# concepts:
# translation, measuring objects
# description:
# Every object rises (towards smaller x) by its own height.

def transform(input_grid):
    output_grid = np.zeros_like(input_grid)
    for obj in find_connected_components(input_grid, background=Color.BLACK, monochromatic=True):
        xs, ys = np.where(obj != Color.BLACK)
        height = xs.max() - xs.min() + 1
        blit_object(output_grid, translate(obj, -height, 0, background=Color.BLACK))
    return output_grid
