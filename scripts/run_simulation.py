"""Run an experiment config: ``python scripts/run_simulation.py --config configs/synthetic.yaml``."""

import argparse
import sys

from ialp.cli import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="experiment YAML")
    args, rest = parser.parse_known_args()
    sys.exit(main(["run", args.config, *rest]))
