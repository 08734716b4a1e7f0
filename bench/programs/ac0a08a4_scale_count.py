from common import *

import numpy as np
from typing import *

# concepts:
# scaling, counting
# description:
# Scale by the number of coloured cells.

def transform(input_grid):
    factor = int(np.sum(input_grid != Color.BLACK))
    return scale_sprite(input_grid, factor)
