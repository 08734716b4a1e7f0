from common import *

import numpy as np
from typing import *

# concepts:
# counting
# description:
# Output a 1xN row of the colour, N being the number of coloured cells.

def transform(input_grid):
    color = object_colors(input_grid, background=Color.BLACK)[0]
    count = np.sum(input_grid != Color.BLACK)
    return np.full((1, count), color)
