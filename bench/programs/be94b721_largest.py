from common import *

import numpy as np
from typing import *

# concepts:
# objects, size
# description:
# Output the largest object, cropped.

def transform(input_grid):
    objects = find_connected_components(input_grid, background=Color.BLACK, monochromatic=False, connectivity=8)
    largest = max(objects, key=lambda o: np.sum(o != Color.BLACK))
    return crop(largest, background=Color.BLACK)
