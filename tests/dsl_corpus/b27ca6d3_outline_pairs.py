from common import *

import numpy as np
from typing import *

# concepts:
# objects, outlines
# description:
# Red dominoes (two adjacent red cells) get a green outline around them; single red pixels stay alone.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    n, m = input_grid.shape
    for obj in find_connected_components(input_grid, background=Color.BLACK, connectivity=4):
        xs, ys = np.where(obj == Color.RED)
        if len(xs) != 2:
            continue
        x0, x1 = max(xs.min() - 1, 0), min(xs.max() + 2, n)
        y0, y1 = max(ys.min() - 1, 0), min(ys.max() + 2, m)
        frame = output_grid[x0:x1, y0:y1]
        frame[frame == Color.BLACK] = Color.GREEN
    return output_grid
