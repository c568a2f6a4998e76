"""Designer script: mine candidate frames from a title's video (same as `artwork frames`).

    python scripts/mine_frames.py TITLE_ID VIDEO [--max 12] [--title-name NAME] [--store PATH]
"""

import sys

from bandit.cli import cli

if __name__ == "__main__":
    args = sys.argv[1:]
    store = []
    if "--store" in args:  # a group option: it must come before the subcommand
        i = args.index("--store")
        store, args = args[i:i + 2], args[:i] + args[i + 2:]
    cli.main([*store, "frames", *args], prog_name="mine_frames.py")
