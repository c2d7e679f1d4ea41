"""The first link of a chain: the script imports a, a imports b."""
import b


def run_chain(x):
    return b.scale(x) + 1


def make_thing(x):
    return b.Thing(x)
