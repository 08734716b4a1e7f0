from common import *

import numpy as np
from typing import *

# concepts:
# repetition, translational symmetry
# description:
# The grid is three copies side by side: output one.

def transform(input_grid):
    return input_grid[:, : input_grid.shape[1] // 3]
