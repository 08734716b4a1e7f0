from common import *

import numpy as np
from typing import *

# concepts:
# bounding boxes, filling
# description:
# Each yellow shape is completed to its bounding box: the empty cells inside the box become orange.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    for obj in detect_objects(input_grid, connectivity=8, monochromatic=True, background=Color.BLACK):
        x, y, w, h = bounding_box(obj)
        box = output_grid[x:x + w, y:y + h]
        box[box == Color.BLACK] = Color.ORANGE
    return output_grid
