from common import *

import numpy as np
from typing import *

# concepts:
# reflection
# description:
# broken: the function has the wrong name

def solve(input_grid):
    return input_grid.T
