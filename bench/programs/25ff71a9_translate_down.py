from common import *

import numpy as np
from typing import *

# concepts:
# translation
# description:
# Move the object one cell down.

def transform(input_grid):
    return translate(input_grid, 1, 0, background=Color.BLACK)
