"""``python -m poolparty.worker``: kept for jobs queued by an older driver; runs :mod:`poolparty.node.worker`."""
import sys

from poolparty.node.worker import main

if __name__ == "__main__":
    sys.exit(main())
