from common import *

import numpy as np
from typing import *

# concepts:
# color swap
# description:
# Swap gray and teal.

def transform(input_grid):
    output_grid = input_grid.copy()
    output_grid[input_grid == Color.GRAY] = Color.TEAL
    output_grid[input_grid == Color.TEAL] = Color.GRAY
    return output_grid
