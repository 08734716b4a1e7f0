from common import *

import numpy as np
from typing import *

# concepts:
# reflection
# description:
# Append the mirror image on the right.

def transform(input_grid):
    return np.concatenate([input_grid, input_grid[:, ::-1]], axis=1)
