from common import *

import numpy as np
from typing import *

# concepts:
# counting, majority
# description:
# Fill the grid with its most common colour.

def transform(input_grid):
    values, counts = np.unique(input_grid, return_counts=True)
    return np.full_like(input_grid, values[np.argmax(counts)])
