from common import *

import numpy as np
from typing import *

# concepts:
# repetition
# description:
# broken: indexes past the end

def transform(input_grid):
    return input_grid[:, [0, 1, 2, 99]]
