def transform(input_grid):
    hog = []
    while True:
        hog.append(bytearray(10**7))
