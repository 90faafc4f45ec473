#!/usr/bin/env python3
"""Start, stop or inspect the local broker + Redis (same as ``streamrec stack``).

python scripts/stack.py up|down|status
"""

import sys

from streamer.cli import main

if __name__ == "__main__":
    sys.exit(main(["stack", *sys.argv[1:]]))
