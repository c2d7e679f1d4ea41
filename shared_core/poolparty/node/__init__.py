"""What runs on the compute node: the worker (``python -m poolparty.node.worker``). Imports little."""
