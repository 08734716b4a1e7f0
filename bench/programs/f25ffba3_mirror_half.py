from common import *

import numpy as np
from typing import *

# concepts:
# reflection
# description:
# Mirror the bottom half onto the top half.

def transform(input_grid):
    n = input_grid.shape[0]
    output_grid = input_grid.copy()
    output_grid[: n // 2] = input_grid[n - n // 2:][::-1]
    return output_grid
