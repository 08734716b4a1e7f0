from common import *

import numpy as np
from typing import *

# concepts:
# repetition
# description:
# The grid repeats once: output one half.

def transform(input_grid):
    n, m = input_grid.shape
    if m % 2 == 0 and np.array_equal(input_grid[:, : m // 2], input_grid[:, m // 2:]):
        return input_grid[:, : m // 2]
    return input_grid[: n // 2, :]
