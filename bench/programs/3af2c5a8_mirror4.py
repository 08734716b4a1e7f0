from common import *

import numpy as np
from typing import *

# concepts:
# symmetry, reflection
# description:
# Make the grid symmetric four ways by mirroring it right and down.

def transform(input_grid):
    top = np.concatenate([input_grid, input_grid[:, ::-1]], axis=1)
    return np.concatenate([top, top[::-1, :]], axis=0)
