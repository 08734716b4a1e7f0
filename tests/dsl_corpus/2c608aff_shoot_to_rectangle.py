from common import *

import numpy as np
from typing import *

# concepts:
# lines, alignment, stopping at an object
# description:
# On a coloured background there is one big rectangle and some single pixels. Every pixel that lies in
# the rectangle's band of rows or columns shoots a line of its colour towards the rectangle, stopping
# when it touches it. Pixels outside both bands stay as they are.

def transform(input_grid):
    output_grid = np.copy(input_grid)
    colors, counts = np.unique(input_grid, return_counts=True)
    background = colors[np.argmax(counts)]

    objects = find_connected_components(input_grid, background=background, connectivity=4, monochromatic=True)
    rectangle = max(objects, key=lambda obj: np.sum(obj != background))
    rect_color = object_colors(rectangle, background=background)[0]
    rx, ry, width, height = bounding_box(rectangle, background=background)

    for x, y in np.argwhere((input_grid != background) & (rectangle == background)):
        color = input_grid[x, y]
        if ry <= y < ry + height:
            direction = (1, 0) if x < rx else (-1, 0)
        elif rx <= x < rx + width:
            direction = (0, 1) if y < ry else (0, -1)
        else:
            continue
        draw_line(output_grid, x, y, direction=direction, color=color, stop_at_color=[rect_color])
    return output_grid
