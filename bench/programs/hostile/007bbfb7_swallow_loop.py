from common import *

def transform(input_grid):
    while True:
        try:
            pass
        except:
            pass
