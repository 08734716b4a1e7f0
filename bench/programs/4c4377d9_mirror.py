from common import *

import numpy as np
from typing import *

# concepts:
# reflection, repetition
# description:
# Stack the upside-down grid on top of the grid.

def transform(input_grid):
    return np.concatenate([input_grid[::-1, :], input_grid], axis=0)
