from common import *

import numpy as np
from typing import *

# concepts:
# reflection
# description:
# Append the upside-down grid below.

def transform(input_grid):
    return np.vstack([input_grid, np.flipud(input_grid)])
