from common import *

import numpy as np
from typing import *

# concepts:
# pattern detection, replacement
# description:
# Every blue 3x3 ring (a square outline with an empty centre) is replaced by a red plus sign of the same
# size. Other blue shapes stay.

def transform(input_grid):
    ring = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]]) * Color.BLUE
    plus = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]]) * Color.RED

    def is_ring(window):
        return np.array_equal(window, ring)

    output_grid = np.copy(input_grid)
    rings = detect_objects(input_grid, allowed_dimensions=[(3, 3)], predicate=is_ring, colors=[Color.BLUE])
    for obj in rings:
        x, y = np.argwhere(obj == Color.BLUE).min(axis=0)
        output_grid[x:x + 3, y:y + 3] = Color.BLACK
        blit_sprite(output_grid, plus, x, y)
    return output_grid
