from common import *

import numpy as np
from typing import *

# concepts:
# objects, size
# description:
# Output the smallest rectangle.

def transform(input_grid):
    objects = find_connected_components(input_grid, background=Color.BLACK, connectivity=4, monochromatic=True)
    smallest = min(objects, key=lambda o: np.sum(o != Color.BLACK))
    return crop(smallest)
