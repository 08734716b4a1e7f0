from common import *

import numpy as np
from typing import *

# concepts:
# scaling
# description:
# broken: colours out of range

def transform(input_grid):
    return scale_sprite(input_grid, 3) + 10
