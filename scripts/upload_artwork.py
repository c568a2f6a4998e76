"""Designer script: upload candidate images for a title (same as `artwork upload`).

    python scripts/upload_artwork.py TITLE_ID FILE_OR_DIR... [--title-name NAME] [--store PATH]
"""

import sys

from bandit.cli import cli

if __name__ == "__main__":
    args = sys.argv[1:]
    store = []
    if "--store" in args:  # a group option: it must come before the subcommand
        i = args.index("--store")
        store, args = args[i:i + 2], args[:i] + args[i + 2:]
    cli.main([*store, "upload", *args], prog_name="upload_artwork.py")
