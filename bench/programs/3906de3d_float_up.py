from common import *

import numpy as np
from typing import *

# concepts:
# gravity, objects
# description:
# Red segments rise until they touch the blue shape.

def transform(input_grid):
    output_grid = input_grid.copy()
    n, m = input_grid.shape
    for y in range(m):
        reds = [x for x in range(n) if input_grid[x, y] == Color.RED]
        if not reds:
            continue
        blues = [x for x in range(n) if input_grid[x, y] == Color.BLUE]
        top = max(blues) + 1 if blues else 0
        for x in reds:
            output_grid[x, y] = Color.BLACK
        for i in range(len(reds)):
            output_grid[top + i, y] = Color.RED
    return output_grid
