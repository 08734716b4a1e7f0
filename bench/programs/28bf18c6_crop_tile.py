from common import *

import numpy as np
from typing import *

# concepts:
# cropping, repetition
# description:
# Crop the object and put two copies side by side.

def transform(input_grid):
    objects = find_connected_components(input_grid, monochromatic=False, connectivity=8)
    sprite = crop(objects[0], background=Color.BLACK)
    return np.concatenate([sprite, sprite], axis=1)
