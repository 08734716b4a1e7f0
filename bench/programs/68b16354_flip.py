from common import *

import numpy as np
from typing import *

# concepts:
# reflection
# description:
# Flip the grid upside down.

def transform(input_grid):
    return np.flipud(input_grid)
