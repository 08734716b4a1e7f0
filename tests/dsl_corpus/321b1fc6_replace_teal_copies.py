from common import *

import numpy as np
from typing import *

# concepts:
# objects, copying, template
# description:
# One multicoloured template shape and several teal shapes of the same form. Every teal shape is replaced
# by the template; the template itself disappears.

def transform(input_grid):
    objects = detect_objects(input_grid, connectivity=4, monochromatic=False, background=Color.BLACK)
    teal_objects = [obj for obj in objects if set(object_colors(obj)) == {Color.TEAL}]
    template = [obj for obj in objects if set(object_colors(obj)) != {Color.TEAL}][0]
    sprite = crop(template)

    output_grid = np.zeros_like(input_grid)
    for obj in teal_objects:
        x, y = object_position(obj)
        blit_sprite(output_grid, sprite, x, y)
    return output_grid
