"""The tests' name for scripts/synthetic_video.py (synthetic videos with a known shot list).

The writer lives in scripts/ because scripts/make_sample_video.py builds the demo's sample video
with it, and scripts must not depend on tests/; the tests keep importing `videos`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from synthetic_video import (PALETTE, Shot, ShotSpec, nearest_colour, pick_codec, shot_at, text_card,  # noqa: E402,F401
                             texture, write_audio_only, write_empty_video, write_video)
