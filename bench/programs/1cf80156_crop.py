from common import *

import numpy as np
from typing import *

# concepts:
# cropping
# description:
# Crop the grid to the single object.

def transform(input_grid):
    return crop(input_grid, background=Color.BLACK)
