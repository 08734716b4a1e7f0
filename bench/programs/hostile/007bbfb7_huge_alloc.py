import numpy as np

def transform(input_grid):
    return np.zeros((10**6, 10**6))
