from common import *

import numpy as np
from typing import *

# concepts:
# objects, noise, cropping
# description:
# A big canvas with scattered noise pixels and one larger object. Output the larger object, cropped.

def transform(input_grid):
    objects = detect_objects(input_grid, connectivity=8, monochromatic=True, background=Color.BLACK)
    biggest = max(objects, key=lambda obj: np.sum(obj != Color.BLACK))
    return crop(biggest, background=Color.BLACK)
