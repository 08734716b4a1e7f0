def transform(input_grid):
    while True:
        print("spam" * 1000)
