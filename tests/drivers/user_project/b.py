"""The second link of the chain."""
FACTOR = 100


def scale(x):
    return x * FACTOR


class Thing:
    def __init__(self, v):
        self.v = v
