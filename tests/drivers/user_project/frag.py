"""A sibling module whose function raises."""


def fragile(x):
    if x > 0:
        raise ValueError(f"fragile got {x}")  # the raising line
    return x
