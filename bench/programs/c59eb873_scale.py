from common import *

import numpy as np
from typing import *

# concepts:
# scaling
# description:
# Scale the grid by two.

def transform(input_grid):
    return scale_sprite(input_grid, 2)
