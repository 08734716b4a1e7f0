from common import *

import numpy as np
from typing import *

# concepts:
# objects, translation, contact
# description:
# Slide the red object towards the teal square until they touch.

def transform(input_grid):
    red = np.where(input_grid == Color.RED, Color.RED, Color.BLACK)
    teal = np.where(input_grid == Color.TEAL, Color.TEAL, Color.BLACK)
    rx, ry, _, _ = bounding_box(red)
    tx, ty, _, _ = bounding_box(teal)
    dx, dy = int(np.sign(tx - rx)), int(np.sign(ty - ry))
    if abs(tx - rx) < abs(ty - ry):
        dx = 0
    else:
        dy = 0
    for _ in range(30):
        if contact(object1=red, object2=teal):
            break
        red = translate(red, dx, dy)
    output_grid = teal.copy()
    blit_object(output_grid, red)
    return output_grid
