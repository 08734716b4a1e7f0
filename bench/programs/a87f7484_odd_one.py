from common import *

import numpy as np
from typing import *

# concepts:
# objects, uniqueness
# description:
# The input is split into 3x3 panels; output the panel whose shape differs from the others.

def transform(input_grid):
    n, m = input_grid.shape
    if n > m:
        panels = [input_grid[i:i + m, :] for i in range(0, n, m)]
    else:
        panels = [input_grid[:, i:i + n] for i in range(0, m, n)]
    masks = [p != Color.BLACK for p in panels]
    for p, mask in zip(panels, masks):
        if sum(np.array_equal(mask, other) for other in masks) == 1:
            return p
    return panels[0]
