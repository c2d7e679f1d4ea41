"""A sibling module of the script."""


def simulate(x):
    return x * 10
