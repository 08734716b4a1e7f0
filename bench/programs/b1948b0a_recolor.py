from common import *

import numpy as np
from typing import *

# concepts:
# color change
# description:
# Pink cells become red.

def transform(input_grid):
    return np.where(input_grid == Color.PINK, Color.RED, input_grid)
