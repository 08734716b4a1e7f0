from common import *

import numpy as np
from typing import *

# concepts:
# cropping, reflection
# description:
# Crop the object and mirror it left to right.

def transform(input_grid):
    return crop(input_grid)[:, ::-1]
