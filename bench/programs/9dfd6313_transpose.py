from common import *

import numpy as np
from typing import *

# concepts:
# diagonal reflection
# description:
# Reflect the grid over its main diagonal.

def transform(input_grid):
    return np.transpose(input_grid)
