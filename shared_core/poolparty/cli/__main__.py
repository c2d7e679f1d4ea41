"""``python -m poolparty.cli``: the same as the ``poolparty`` command."""
from poolparty.cli.main import main

main(prog_name="poolparty")
