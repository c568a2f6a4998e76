"""The `artwork` console command: image-side commands from `artwork.cli` plus the decision side."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from artwork.cli import cli, console, encoder_label, encoder_options, open_catalog, out, print_report, resolve_encoder, tags_table, title_rows, user_errors
from artwork.ingest import Ingestor

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def ingest_samples(catalog: Any, encoder: Any, samples: Path = ASSETS / "samples", progress: bool = True) -> bool:
    """Upload every sample title in assets/samples (and its cast); True when nothing was rejected."""
    manifest = json.loads((samples / "titles.json").read_text())
    ingestor = Ingestor(catalog, encoder)
    ok = True
    for title_id, spec in manifest.items():
        report = ingestor.upload_files(title_id, [samples / title_id], title_name=spec["name"], progress=progress)
        print_report(report)
        ok &= report.ok
        for name, refs in spec.get("cast", {}).items():
            ingestor.add_cast_member(title_id, name, [samples / r for r in refs])
    return ok


@cli.command()
@encoder_options
@click.option("--quiet", is_flag=True, help="no progress bars")
@click.pass_context
@user_errors
def demo(ctx: click.Context, quiet: bool, **enc: Any) -> None:
    """The main job: ingest the sample titles in assets/ and print each candidate's top tags."""
    with open_catalog(ctx) as catalog:
        encoder = resolve_encoder(catalog, **enc)
        ok = ingest_samples(catalog, encoder, progress=not quiet)
        label = encoder_label(catalog.encoder_id)
        for t in catalog.titles():
            out.print(tags_table(f"{t.title_id} ({t.name})", title_rows(catalog, t.title_id), label))
    if not ok:
        sys.exit(1)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
