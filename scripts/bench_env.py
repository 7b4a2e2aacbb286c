"""Benchmark: user-steps per second of the single and batched environments (see ``ialp bench env``)."""

import sys

from ialp.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "env", *sys.argv[1:]]))
