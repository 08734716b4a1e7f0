from common import *

import numpy as np
from typing import *

# concepts:
# color mapping
# description:
# broken: a syntax error

def transform(input_grid)
    return input_grid
