from common import *

import numpy as np
from typing import *

# concepts:
# repetition
# description:
# Put two copies of the input side by side.

def transform(input_grid):
    return np.concatenate([input_grid, input_grid], axis=1)
