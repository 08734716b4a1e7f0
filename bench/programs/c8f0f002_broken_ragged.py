from common import *

import numpy as np
from typing import *

# concepts:
# color change
# description:
# broken: ragged rows

def transform(input_grid):
    rows = [list(row) for row in input_grid]
    rows[0].append(1)
    return rows
