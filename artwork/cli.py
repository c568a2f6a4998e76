"""Image-side commands of the `artwork` CLI: upload, frames, cast (add, list, remove), show, reembed.

`bandit.cli` adds the decision-side commands to this same group and is the console entry point.
Every user-facing failure becomes one clear line (click.ClickException), never a traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click
from rich.console import Console
from rich.table import Table

from artwork.encoder import DEFAULT_MODEL, DEFAULT_PRETRAINED, TINY_NAME, Encoder, WeightsUnavailable, load_encoder, load_or_tiny
from artwork.faces import DEFAULT_THRESHOLD, FacesUnavailable
from artwork.faces import MODEL_ID as FACE_MODEL_ID
from artwork.images import ImageLimits, ImageRejected
from artwork.ingest import CastManager, IngestReport, Ingestor
from artwork.records import FaceSummary
from artwork.store import DEFAULT_STORE, Catalog, StoreError

console = Console(stderr=True, soft_wrap=True)  # one message, one line: easy to grep
out = Console(soft_wrap=True)


def user_errors(fn: Callable) -> Callable:
    """Turn the project's expected errors into one-line CLI errors."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ImageRejected, StoreError, WeightsUnavailable, FacesUnavailable, ValueError, FileNotFoundError) as exc:
            # FramesError and ContextError are ValueErrors too: their messages name the file/field.
            raise click.ClickException(str(exc)) from None
    return wrapper


def encoder_options(fn: Callable) -> Callable:
    """--model/--pretrained/--checkpoint/--cache-dir/--device/--download for commands that embed."""
    for opt in reversed([
        click.option("--model", default=None, help=f"open_clip architecture, or '{TINY_NAME}' for the test encoder "
                                                   f"[default: the catalog's encoder, else {DEFAULT_MODEL}]"),
        click.option("--pretrained", default=None, help=f"open_clip pretrained tag [default: {DEFAULT_PRETRAINED}]"),
        click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="local open_clip checkpoint file"),
        click.option("--cache-dir", default=None, help="Hugging Face cache folder holding pretrained weights"),
        click.option("--device", default=None, help="torch device [default: cuda if present, else cpu]"),
        click.option("--download", is_flag=True, help="allow downloading pretrained weights"),
    ]):
        fn = opt(fn)
    return fn


def resolve_encoder(catalog: Catalog | None, model: str | None, pretrained: str | None, checkpoint: str | None,
                    cache_dir: str | None, device: str | None, download: bool, fallback: bool = True) -> Encoder:
    """Pick the encoder: explicit options, else the one the catalog was built with, else the default.

    Only the default may fall back to the tiny encoder (with a one-line notice); an encoder
    asked for explicitly, or the catalog's own, must load or fail with instructions.
    """
    explicit = model is not None or checkpoint is not None
    if not explicit and catalog is not None and catalog.encoder_id:
        enc_id = catalog.encoder_id
        if enc_id.startswith("tiny-random-clip/"):
            return load_encoder(TINY_NAME, device=device)
        parts = enc_id.split("/")
        if len(parts) == 3 and not parts[2].startswith("file:"):
            return load_encoder(parts[1], parts[2], cache_dir=cache_dir, device=device, download=download)
        raise WeightsUnavailable(f"catalog {catalog.path} was embedded with {enc_id}: pass --model and "
                                 f"--checkpoint PATH for that checkpoint")
    kwargs = dict(model=model or DEFAULT_MODEL, pretrained=pretrained or DEFAULT_PRETRAINED, checkpoint=checkpoint,
                  cache_dir=cache_dir, device=device, download=download)
    if explicit or not fallback:
        return load_encoder(**kwargs)
    return load_or_tiny(warn=lambda msg: console.print(f"[yellow]{msg}[/yellow]"), **kwargs)


def print_report(report: IngestReport) -> None:
    for o in report.outcomes:
        if o.status == "rejected":
            console.print(f"[red]rejected[/red] {o.name}: {o.reason}")
        elif o.status == "duplicate":
            console.print(f"[yellow]duplicate[/yellow] {o.name}: {o.reason} (artwork {o.artwork_id})")
    console.print(f"{report.title_id}: {report.count('added')} added, {report.count('duplicate')} duplicate, "
                  f"{report.count('rejected')} rejected")


@click.group()
@click.option("--store", default=lambda: os.environ.get("ARTWORK_STORE", DEFAULT_STORE), show_default="$ARTWORK_STORE or artwork.db",
              help="catalog file (SQLite)")
@click.pass_context
def cli(ctx: click.Context, store: str) -> None:
    """Personalized artwork selection engine."""
    ctx.obj = {"store": store}


def open_catalog(ctx: click.Context, create: bool = True) -> Catalog:
    """The --store catalog; read-only commands pass create=False so a typo is an error, not a new file."""
    try:
        return Catalog(ctx.obj["store"], create=create)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.argument("title_id")
@click.argument("paths", nargs=-1, required=True)
@click.option("--title-name", default=None, help="display name when the title is created")
@click.option("--min-side", default=ImageLimits.min_side, show_default=True, help="minimum short side in px")
@click.option("--max-pixels", default=ImageLimits.max_pixels, show_default=True, help="maximum width*height")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--quiet", is_flag=True, help="no progress bar")
@encoder_options
@click.pass_context
@user_errors
def upload(ctx: click.Context, title_id: str, paths: tuple[str, ...], title_name: str | None, min_side: int,
           max_pixels: int, batch_size: int, quiet: bool, **enc: Any) -> None:
    """Add candidate images (files or folders of JPEG/PNG/WebP) to a title."""
    with open_catalog(ctx) as catalog:
        encoder = resolve_encoder(catalog, **enc)
        ingestor = Ingestor(catalog, encoder, limits=ImageLimits(min_side, max_pixels), batch_size=batch_size)
        report = ingestor.upload_files(title_id, paths, title_name=title_name, progress=not quiet)
        print_report(report)
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("title_id")
@click.argument("video", type=click.Path(dir_okay=False))
@click.option("--max", "max_candidates", default=12, show_default=True, help="most candidates to keep")
@click.option("--title-name", default=None, help="display name when the title is created")
@click.option("--quiet", is_flag=True, help="no progress bars")
@encoder_options
@click.pass_context
@user_errors
def frames(ctx: click.Context, title_id: str, video: str, max_candidates: int, title_name: str | None,
           quiet: bool, **enc: Any) -> None:
    """Mine diverse, good-quality candidate frames from a title's video."""
    if max_candidates < 1:
        raise click.BadParameter("must be at least 1", param_hint="--max")
    from artwork.frames import FrameConfig, SampleStats

    stats = SampleStats()
    with open_catalog(ctx) as catalog:
        ingestor = Ingestor(catalog, resolve_encoder(catalog, **enc))
        report = ingestor.add_video_frames(title_id, video, max_candidates, config=FrameConfig(stats=stats),
                                           title_name=title_name, progress=not quiet)
        print_report(report)
    if not report.outcomes:  # nothing added, nothing already there: say why, and fail
        console.print(f"[red]no frames added[/red] from {Path(video).name}: {stats.explain()}")
        sys.exit(1)
    if not report.ok:
        sys.exit(1)


@cli.group()
def cast() -> None:
    """Manage a title's cast gallery (reference photos of its actors' faces)."""


@cast.command("add")
@click.argument("title_id")
@click.argument("name")
@click.argument("refs", nargs=-1, required=True)
@click.option("--lead", is_flag=True, help="make this actor the title's lead [default: the first actor added]")
@click.pass_context
@user_errors
def cast_add(ctx: click.Context, title_id: str, name: str, refs: tuple[str, ...], lead: bool) -> None:
    """Add an actor with reference photos (one clear face each), then rescore the title's candidates."""
    with open_catalog(ctx, create=False) as catalog:
        thresholds = CastManager(catalog).add_cast_member(title_id, name, refs, lead=lead)
        present = sum(name in a.tags.actors_present for a in catalog.artworks(title_id))
    console.print(f"{title_id}: cast {', '.join(sorted(thresholds))}; {name!r} recognised in {present} candidate(s) "
                  f"(face distance threshold {thresholds[name]:.3f}; default {DEFAULT_THRESHOLD})")


@cast.command("list")
@click.argument("title_id")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.pass_context
@user_errors
def cast_list(ctx: click.Context, title_id: str, as_json: bool) -> None:
    """A title's cast: lead, reference photos, threshold and the candidates each actor is recognised in."""
    with open_catalog(ctx, create=False) as catalog:
        if catalog.title(title_id) is None:
            raise StoreError(f"unknown title {title_id!r}")
        arts = catalog.artworks(title_id)
        rows = [{"name": m.name, "lead": m.lead, "references": len(m.refs),
                 "usable_references": sum(face is not None and face >= 0 for _, face in m.refs),
                 "threshold": m.threshold,
                 "recognised_in": [a.artwork_id for a in arts if m.name in a.tags.actors_present]}
                for m in catalog.cast_members(title_id)]
    if as_json:
        click.echo(json.dumps({"title_id": title_id, "default_threshold": DEFAULT_THRESHOLD, "cast": rows}, indent=2))
        return
    if not rows:
        out.print(f"{title_id}: no cast (add one with `artwork cast add {title_id} NAME PHOTO...`)")
        return
    table = Table(title=f"{title_id} cast  [dim](faces: {FACE_MODEL_ID}; default threshold {DEFAULT_THRESHOLD})[/dim]")
    for col in ("actor", "lead", "reference photos", "threshold", "recognised in"):
        table.add_column(col)
    for r in rows:
        refs = f"{r['references']}" + ("" if r["usable_references"] == r["references"]
                                       else f" ({r['usable_references']} with a usable face)")
        table.add_row(r["name"], "lead" if r["lead"] else "", refs,
                      "-" if r["threshold"] is None else f"{r['threshold']:.3f}",
                      f"{len(r['recognised_in'])} of {len(arts)} candidates")
    out.print(table)


@cast.command("remove")
@click.argument("title_id")
@click.argument("name")
@click.pass_context
@user_errors
def cast_remove(ctx: click.Context, title_id: str, name: str) -> None:
    """Remove an actor from a title's cast and rescore its candidates against the rest."""
    with open_catalog(ctx, create=False) as catalog:
        if catalog.title(title_id) is None:
            raise StoreError(f"unknown title {title_id!r}")
        thresholds = CastManager(catalog).remove_cast_member(title_id, name)
    rest = ", ".join(sorted(thresholds)) or "none"
    console.print(f"{title_id}: removed {name!r} from the cast; cast now: {rest}")


def title_rows(catalog: Catalog, title_id: str) -> list[dict]:
    """A title's candidates as plain dicts (for tables, JSON and the HTTP API)."""
    if catalog.title(title_id) is None:
        raise StoreError(f"unknown title {title_id!r}")
    rows = []
    for a in catalog.artworks(title_id):
        rows.append({
            "artwork_id": a.artwork_id, "source": a.source, "width": a.width, "height": a.height,
            "sha256": a.sha256, "encoder": a.encoder_id, "pinned": a.pinned, "disabled": a.disabled,
            "top_moods": a.tags.top("moods"), "top_genres": a.tags.top("genres"),
            "actors": a.tags.actors, "actors_present": a.tags.actors_present,
            "actor_distances": a.tags.actor_distances,
            "faces": None if a.tags.faces is None else dataclasses.asdict(a.tags.faces), "meta": a.meta,
        })
    return rows


def _fmt(pairs: list[tuple[str, float]]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in pairs)


def faces_text(faces: dict | None) -> str:
    """'2 faces, largest 12% at x 0.31, lead' for one artwork (FaceSummary as a dict)."""
    if faces is None:
        return "not scanned"
    f = FaceSummary(**faces)
    if not f.n_faces:
        return "none"
    text = f"{f.n_faces} face{'s' if f.n_faces > 1 else ''}, largest {f.largest_share:.0%} at x {f.largest_x:.2f}"
    return text + (", lead" if f.lead_visible else "")


def actors_text(r: dict) -> str:
    """'Name* 0.97 (d 0.12)': * recognised, then confidence and face distance."""
    parts = []
    for n, s in r["actors"].items():
        d = r["actor_distances"].get(n)
        parts.append(f"{n}{'*' if n in r['actors_present'] else ''} {s:.2f}" + (f" (d {d:.2f})" if d is not None else ""))
    return ", ".join(parts) or "-"


def tags_table(title: str, rows: list[dict], encoder_label: str, actors_label: str) -> Table:
    table = Table(title=f"{title}  [dim](moods/genres: {encoder_label}; actors: {actors_label})[/dim]")
    for col in ("artwork", "source", "size", "top moods", "top genres", "faces", "actors (* recognised)"):
        table.add_column(col)
    for r in rows:
        flags = (" [pinned]" if r["pinned"] else "") + (" [disabled]" if r["disabled"] else "")
        table.add_row(r["artwork_id"] + flags, r["source"], f"{r['width']}x{r['height']}",
                      _fmt(r["top_moods"]), _fmt(r["top_genres"]), faces_text(r["faces"]), actors_text(r))
    return table


def encoder_label(encoder_id: str | None) -> str:
    if encoder_id and encoder_id.startswith("tiny-random-clip/"):
        return f"{encoder_id}: TINY RANDOM TEST ENCODER, mood/genre tags not meaningful"
    return encoder_id or "none yet"


def actors_label(catalog: Catalog, title_id: str) -> str:
    """Which path tagged the title's actors: the face model, or the version 1 CLIP matcher."""
    methods = catalog.actor_methods(title_id)
    if not methods:
        return "no cast" if not catalog.cast_members(title_id) else "not scored yet"
    if methods == {f"face:{FACE_MODEL_ID}"}:
        return f"face model {FACE_MODEL_ID}, not CLIP"
    return ("matched by CLIP before faces existed (" + ", ".join(sorted(methods)) + "): upload to the title "
            "or `artwork cast add` again to rescore by face")


@cli.command()
@click.argument("title_id")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.pass_context
@user_errors
def show(ctx: click.Context, title_id: str, as_json: bool) -> None:
    """List a title's candidates with their tags."""
    with open_catalog(ctx, create=False) as catalog:
        rows = title_rows(catalog, title_id)
        label = encoder_label(catalog.encoder_id)
        actors = actors_label(catalog, title_id)
        thresholds = catalog.cast_thresholds(title_id)
    if as_json:
        click.echo(json.dumps({"title_id": title_id, "encoder": label, "actors_tagged_by": actors,
                               "actor_thresholds": thresholds, "artworks": rows}, indent=2))
    else:
        out.print(tags_table(title_id, rows, label, actors))


@cli.command()
@encoder_options
@click.option("--quiet", is_flag=True)
@click.pass_context
@user_errors
def reembed(ctx: click.Context, quiet: bool, **enc: Any) -> None:
    """Re-embed and re-tag the whole catalog with another encoder (one atomic switch)."""
    if enc["model"] is None and enc["checkpoint"] is None:
        raise click.UsageError("say which encoder to switch to with --model (and --pretrained or --checkpoint)")
    with open_catalog(ctx, create=False) as catalog:
        encoder = resolve_encoder(None, fallback=False, **enc)
        old = catalog.encoder_id
        n = Ingestor(catalog, encoder, reembed=True).reembed_catalog(progress=not quiet)
    console.print(f"re-embedded {n} images: {old} -> {encoder.encoder_id}")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
