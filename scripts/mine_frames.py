"""Designer script: mine candidate frames from a title's video (same as `artwork frames`).

    python scripts/mine_frames.py TITLE_ID VIDEO [--max 12] [--title-name NAME] [--store PATH]
"""

import sys

from bandit.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("frames", sys.argv[1:], prog_name="mine_frames.py")
