from common import *

import numpy as np
from typing import *

# concepts:
# patterns, completion
# description:
# Each L of three teal cells gets a blue cell in its missing corner.

def transform(input_grid):
    output_grid = input_grid.copy()
    n, m = input_grid.shape
    for x in range(n - 1):
        for y in range(m - 1):
            window = input_grid[x:x + 2, y:y + 2]
            if np.sum(window == Color.TEAL) == 3:
                dx, dy = np.argwhere(window != Color.TEAL)[0]
                output_grid[x + dx, y + dy] = Color.BLUE
    return output_grid
