from common import *

import numpy as np
from typing import *

# concepts:
# cropping
# description:
# broken: returns a 1-D row

def transform(input_grid):
    return crop(input_grid).flatten()
