from common import *

def transform(input_grid):
    while True:
        try:
            input_grid = input_grid + 0
        except BaseException:
            continue
