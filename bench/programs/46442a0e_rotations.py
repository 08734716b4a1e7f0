from common import *

import numpy as np
from typing import *

# concepts:
# rotation, repetition
# description:
# Tile four rotations of the grid.

def transform(input_grid):
    top = np.concatenate([input_grid, np.rot90(input_grid, -1)], axis=1)
    bottom = np.concatenate([np.rot90(input_grid, 1), np.rot90(input_grid, 2)], axis=1)
    return np.concatenate([top, bottom], axis=0)
