from common import *

import numpy as np
from typing import *

# concepts:
# rotation
# description:
# wrong answer: rotates by 90 instead of 180

def transform(input_grid):
    return np.rot90(input_grid)
