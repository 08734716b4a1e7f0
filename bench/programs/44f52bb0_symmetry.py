from common import *

import numpy as np
from typing import *

# concepts:
# symmetry detection
# description:
# Output blue if the pattern is left-right symmetric, orange otherwise.

def transform(input_grid):
    symmetric = np.array_equal(input_grid, input_grid[:, ::-1])
    return np.array([[Color.BLUE if symmetric else Color.ORANGE]])
