from common import *

import numpy as np
from typing import *

# concepts:
# reflection
# description:
# Mirror the grid left to right.

def transform(input_grid):
    return input_grid[:, ::-1]
