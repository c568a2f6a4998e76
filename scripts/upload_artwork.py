"""Designer script: upload candidate images for a title (same as `artwork upload`).

    python scripts/upload_artwork.py TITLE_ID FILE_OR_DIR... [--title-name NAME] [--store PATH]
"""

import sys

from bandit.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("upload", sys.argv[1:], prog_name="upload_artwork.py")
