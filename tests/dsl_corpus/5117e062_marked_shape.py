from common import *

import numpy as np
from typing import *

# concepts:
# objects, markers, cropping
# description:
# Several shapes; one of them contains a teal cell. Output that shape cropped, the teal cell painted in the
# shape's own colour.

def transform(input_grid):
    teal_x, teal_y = np.argwhere(input_grid == Color.TEAL)[0]
    for obj in find_connected_components(input_grid, connectivity=8, monochromatic=False):
        if obj[teal_x, teal_y] == Color.TEAL:
            sprite = crop(obj)
            body_color = [c for c in object_colors(sprite) if c != Color.TEAL][0]
            sprite[sprite == Color.TEAL] = body_color
            return sprite
    return input_grid
