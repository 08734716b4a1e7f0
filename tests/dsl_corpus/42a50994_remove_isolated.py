from common import *

import numpy as np
from typing import *

# concepts:
# denoising, connectivity
# description:
# Remove every pixel that has no neighbour of any colour among its eight neighbours.

def transform(input_grid):
    output_grid = np.zeros_like(input_grid)
    for obj in find_connected_components(input_grid, background=Color.BLACK, connectivity=8, monochromatic=False):
        if np.sum(obj != Color.BLACK) > 1:
            blit_object(output_grid, obj, background=Color.BLACK)
    return output_grid
