from common import *

import numpy as np
from typing import *

# concepts:
# scaling, counting colours
# description:
# Scale by the number of distinct colours.

def transform(input_grid):
    factor = len(object_colors(input_grid, background=Color.BLACK))
    return scale_sprite(input_grid, factor)
