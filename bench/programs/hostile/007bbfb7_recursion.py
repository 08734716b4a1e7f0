def transform(input_grid):
    return transform(input_grid)
