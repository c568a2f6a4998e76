"""Image-side commands of the `artwork` CLI: upload, frames, cast (add, list, remove), show, titles,
remove, reembed; and the group itself (`--store` anywhere, `--version`, lazily imported commands).

`bandit.cli` adds the decision-side commands to this same group and is the console entry point.
Every user-facing failure becomes one clear line (click.ClickException), never a traceback.
Results go to stdout (`out`); progress bars, warnings and notes to stderr (`console`).

Start-up: `artwork --help` and the commands that only read the catalog must start in well under a
second, so this module imports no torch, open_clip, dlib, av, matplotlib or fastapi: a command
imports what it needs when it runs (`scripts/bench_cli.py` measures it; tests/test_cli.py checks
that `import bandit.cli` leaves torch out).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from artwork.faces import DEFAULT_THRESHOLD, FacesUnavailable
from artwork.faces import MODEL_ID as FACE_MODEL_ID
from artwork.images import ImageLimits, ImageRejected
from artwork.records import FaceSummary
from artwork.paths import StorePaths
from artwork.store import DEFAULT_STORE, Catalog, StoreError

if TYPE_CHECKING:
    from artwork.encoder import Encoder
    from artwork.ingest import IngestReport

# The same values as artwork.encoder's (tests/test_cli.py checks), repeated because importing that
# module imports torch, and the options' help text is needed by `--help`.
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
TINY_NAME = "tiny"

console = Console(stderr=True, soft_wrap=True)  # one message, one line: easy to grep
out = Console(soft_wrap=True)


def user_errors(fn: Callable) -> Callable:
    """Turn the project's expected errors into one-line CLI errors."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            # FramesError, ContextError and ManifestError are ValueErrors too: their messages name the
            # file/field/line. WeightsUnavailable is looked up only if the encoder module was loaded:
            # nothing else can raise it, and importing it would import torch.
            encoder = sys.modules.get("artwork.encoder")
            expected = (ImageRejected, StoreError, FacesUnavailable, ValueError, FileNotFoundError,
                        *((encoder.WeightsUnavailable,) if encoder is not None else ()))
            if isinstance(exc, expected):
                raise click.ClickException(str(exc)) from None
            raise
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
    from artwork.encoder import WeightsUnavailable, load_encoder, load_or_tiny

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
    """One stderr line per input that did not simply go in, then the summary (a result) on stdout."""
    for o in report.outcomes:
        name = Text(o.name)  # file names are not rich markup
        if o.status == "rejected":
            console.print(Text.assemble(("rejected", "red"), " ", name, f": {o.reason}"))
        elif o.status == "skipped":
            console.print(Text.assemble(("skipped", "yellow"), " ", name, f": {o.reason}"))
        elif o.status == "duplicate":
            console.print(Text.assemble(("duplicate", "yellow"), " ", name, f": {o.reason} (artwork {o.artwork_id})"))
        elif o.status == "near-duplicate":
            console.print(Text.assemble(("near-duplicate", "yellow"), " ", name,
                                        f": {o.reason}; not added (--allow-duplicates keeps it)"))
        elif o.status == "added" and o.reason:
            console.print(Text.assemble(("kept near-duplicate", "yellow"), " ", name,
                                        f" as artwork {o.artwork_id}: {o.reason}"))
    counts = [f"{report.count('added')} added", f"{report.count('duplicate')} duplicate"]
    counts += [f"{report.count(s)} {s}" for s in ("near-duplicate", "skipped") if report.count(s)]
    out.print(Text(f"{report.title_id}: {', '.join(counts)}, {report.count('rejected')} rejected"))


# -- the group: --store anywhere, --version, commands imported when run -----------------------------
STORE_HELP = "catalog file (SQLite), before or after the command [default: $ARTWORK_STORE or artwork.db]"


def _store_after_command(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """`--store` given after a command name: the same catalog option as before it."""
    if value is None:
        return
    root = ctx.find_root()
    if root.obj is None:  # a command run on its own (a script), without the group
        root.obj = {}
    given = root.obj.get("store_given")
    if given is not None and given != value:
        raise click.UsageError(f"--store given twice with different paths ({given} and {value}); give it once", ctx)
    root.obj["store"] = root.obj["store_given"] = value


def with_store_option(cmd: click.Command) -> click.Command:
    """Let `cmd` take `--store` too (once: a command that has its own store option keeps it)."""
    if not any(p.name == "store" for p in cmd.params):
        cmd.params.append(click.Option(["--store"], default=None, metavar="PATH", expose_value=False,
                                       callback=_store_after_command, help=STORE_HELP))
    return cmd


class ArtworkGroup(click.Group):
    """A command group whose commands all take `--store`, and whose heavy commands are imported only
    when they run (`add_lazy_command`): `artwork --help` lists them from the help text given here."""

    group_class = type  # `cast` and any other subgroup behave the same

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str]] = {}  # name -> ("module:attribute", short help)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(with_store_option(cmd), name)

    def add_lazy_command(self, name: str, import_path: str, short_help: str) -> None:
        """Register `module:attribute` as command `name`, imported the first time it is looked up.

        The attribute is a click command, or a function without arguments that builds one.
        """
        self.lazy[name] = (import_path, short_help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            module, attr = self.lazy[name][0].split(":")
            found = getattr(importlib.import_module(module), attr)
            self.add_command(found if isinstance(found, click.Command) else found(), name)
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own version looks every command up, which would import the lazy ones.
        width = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name)
            if cmd is None:
                rows.append((name, click.utils.make_default_short_help(self.lazy[name][1], width)))
            elif not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=ArtworkGroup)
@click.option("--store", envvar="ARTWORK_STORE", default=DEFAULT_STORE, metavar="PATH", show_envvar=True,
              show_default=True, help="catalog file (SQLite); may also be given after the command")
@click.version_option(package_name="artwork-engine", prog_name="artwork", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, store: str) -> None:
    """Personalized artwork selection engine."""
    given = ctx.get_parameter_source("store") == click.core.ParameterSource.COMMANDLINE
    ctx.obj = {"store": store, "store_given": store if given else None}
    # Progress bars draw on rich's global console: stderr while a command runs, so stdout carries
    # only results. Put back afterwards: in-process callers (tests, notebooks) keep rich's default.
    import rich

    previous = rich.get_console().__dict__
    rich.reconfigure(stderr=True, soft_wrap=True)

    def restore() -> None:
        rich.get_console().__dict__ = previous

    ctx.call_on_close(restore)


def open_catalog(ctx: click.Context, create: bool = True) -> Catalog:
    """The --store catalog; read-only commands pass create=False so a typo is an error, not a new file."""
    try:
        return Catalog(ctx.obj["store"], create=create)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command()
@click.argument("title_id", required=False)
@click.argument("paths", nargs=-1)
@click.option("--manifest", type=click.Path(dir_okay=False), default=None,
              help="CSV with columns title, file, notes (files relative to the CSV's folder); every row is "
                   "checked before anything is stored")
@click.option("--allow-duplicates", is_flag=True,
              help="store pictures that look like a candidate the title already has (other format, size or "
                   "encoding); by default they are skipped with a warning")
@click.option("--title-name", default=None, help="display name when the title is created")
@click.option("--min-side", default=ImageLimits.min_side, show_default=True, help="minimum short side in px")
@click.option("--max-pixels", default=ImageLimits.max_pixels, show_default=True, help="maximum width*height")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--quiet", is_flag=True, help="no progress bar")
@encoder_options
@click.pass_context
@user_errors
def upload(ctx: click.Context, title_id: str | None, paths: tuple[str, ...], manifest: str | None,
           allow_duplicates: bool, title_name: str | None, min_side: int, max_pixels: int, batch_size: int,
           quiet: bool, **enc: Any) -> None:
    """Add candidate images (files or folders of JPEG/PNG/WebP, or a --manifest CSV) to a title.

    Usage: `upload TITLE_ID FILE_OR_DIR...` or `upload --manifest CSV`. Files in a folder that are
    not JPEG, PNG or WebP are skipped, each with a line saying why; exit 1 if a named file or a
    manifest row is bad.
    """
    from artwork.ingest import Ingestor, read_manifest

    limits = ImageLimits(min_side, max_pixels)
    if manifest is not None:
        if title_id is not None or title_name is not None:
            raise click.UsageError("--manifest names the title of every image: give no TITLE_ID, FILE_OR_DIR "
                                   "or --title-name with it")
        rows = read_manifest(manifest, limits)  # before the encoder loads: a bad manifest fails in a moment
    elif title_id is None or not paths:
        raise click.UsageError("expected TITLE_ID and at least one FILE_OR_DIR, or --manifest CSV")
    with open_catalog(ctx) as catalog:
        encoder = resolve_encoder(catalog, **enc)
        ingestor = Ingestor(catalog, encoder, limits=limits, batch_size=batch_size)
        if manifest is not None:
            reports = ingestor.upload_manifest(rows, progress=not quiet, allow_duplicates=allow_duplicates)
        else:
            reports = [ingestor.upload_files(title_id, paths, title_name=title_name, progress=not quiet,
                                             allow_duplicates=allow_duplicates)]
        for report in reports:
            print_report(report)
    if not all(r.ok for r in reports):
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
    from artwork.ingest import Ingestor

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
    from artwork.ingest import CastManager

    with open_catalog(ctx, create=False) as catalog:
        thresholds = CastManager(catalog).add_cast_member(title_id, name, refs, lead=lead)
        present = sum(name in a.tags.actors_present for a in catalog.artworks(title_id))
    out.print(Text(f"{title_id}: cast {', '.join(sorted(thresholds))}; {name!r} recognised in {present} "
                   f"candidate(s) (face distance threshold {thresholds[name]:.3f}; default {DEFAULT_THRESHOLD})"))


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
    from artwork.ingest import CastManager

    with open_catalog(ctx, create=False) as catalog:
        if catalog.title(title_id) is None:
            raise StoreError(f"unknown title {title_id!r}")
        thresholds = CastManager(catalog).remove_cast_member(title_id, name)
    rest = ", ".join(sorted(thresholds)) or "none"
    out.print(Text(f"{title_id}: removed {name!r} from the cast; cast now: {rest}"))


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
    """The `show` table. Artwork ids are what designers copy into `remove` and the pin API, so their
    column never wraps or truncates, however narrow the terminal (80 columns when piped); the other
    columns fold instead. Cells are plain text: a file name like `x[1].jpg` is not rich markup."""
    table = Table(title=Text.assemble(title, (f"  (moods/genres: {encoder_label}; actors: {actors_label})", "dim")))
    id_width = max((len(r["artwork_id"]) for r in rows), default=7)
    table.add_column("artwork", no_wrap=True, min_width=max(id_width, len("disabled")))
    for col in ("source", "size", "top moods", "top genres", "faces", "actors (* recognised)"):
        table.add_column(col, overflow="fold")
    for r in rows:
        flags = "".join(f"\n{f}" for f in ("pinned", "disabled") if r[f])  # under the id, not beside it
        table.add_row(Text(r["artwork_id"] + flags), Text(r["source"]), f"{r['width']}x{r['height']}",
                      Text(_fmt(r["top_moods"])), Text(_fmt(r["top_genres"])), Text(faces_text(r["faces"])),
                      Text(actors_text(r)))
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
@click.option("--ray", "use_ray", is_flag=True,
              help="embed and tag in Ray Data workers (each loads the encoder once); this process alone writes the "
                   "catalog (needs ray[data])")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="Ray cluster for --ray [default: $RAY_ADDRESS, else a local Ray instance on this machine]")
@click.option("--workers", default=None, type=click.IntRange(1, None),
              help="encoder processes for --ray [default: one per CPU of the cluster]")
@click.pass_context
@user_errors
def reembed(ctx: click.Context, quiet: bool, use_ray: bool, address: str | None, workers: int | None,
            **enc: Any) -> None:
    """Re-embed and re-tag the whole catalog with another encoder (one atomic switch)."""
    if enc["model"] is None and enc["checkpoint"] is None:
        raise click.UsageError("say which encoder to switch to with --model (and --pretrained or --checkpoint)")
    if (address is not None or workers is not None) and not use_ray:
        raise click.UsageError("--address and --workers are for --ray; add --ray")
    from artwork.ingest import Ingestor

    with open_catalog(ctx, create=False) as catalog:
        encoder = resolve_encoder(None, fallback=False, **enc)
        old = catalog.encoder_id
        if use_ray:
            import contextlib

            from artwork.ingest import encoder_factory
            from artwork.progress import progress_bar
            from bandit.distributed import RayError, connect, reembed_catalog_on_ray

            # Ray prints raylet notices to stdout: stderr while it runs, so stdout holds the result alone.
            with contextlib.redirect_stdout(sys.stderr):
                try:
                    started = connect(address)
                except RayError as exc:
                    raise click.ClickException(str(exc)) from None
                try:
                    with progress_bar(len(catalog.all_image_hashes()), "re-embed on ray",
                                      enabled=not quiet) as advance:
                        shown = [0]

                        def progress(step: str, done: float, total: float) -> None:
                            advance(done - shown[0])
                            shown[0] = done

                        n = reembed_catalog_on_ray(catalog, encoder_factory(encoder, **enc), encoder.encoder_id,
                                                   workers=workers, progress=progress)
                finally:
                    if started:
                        import ray

                        ray.shutdown()
        else:
            n = Ingestor(catalog, encoder, reembed=True).reembed_catalog(progress=not quiet)
    out.print(Text(f"re-embedded {n} images: {old} -> {encoder.encoder_id}"))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.pass_context
@user_errors
def titles(ctx: click.Context, as_json: bool) -> None:
    """List the catalog's titles with their artwork counts (all, disabled) and pinned artwork."""
    with open_catalog(ctx, create=False) as catalog:
        rows = catalog.title_summaries()
    if as_json:
        click.echo(json.dumps({"titles": rows}, indent=2))
        return
    if not rows:
        out.print("no titles yet (add artwork with `artwork upload TITLE_ID FILE_OR_DIR...`)")
        return
    table = Table()
    table.add_column("title", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("artworks", justify="right")
    table.add_column("disabled", justify="right")
    table.add_column("pinned", no_wrap=True)
    for r in rows:
        table.add_row(Text(r["title_id"]), Text(r["name"]), str(r["artworks"]), str(r["disabled"]), r["pinned"] or "")
    out.print(table)


def logged_decisions(events_path: Path, artwork_id: str) -> tuple[int, int]:
    """(decisions that showed the artwork, decisions that offered it) in a serving event log.

    Read with a plain SELECT on a connection that changes nothing (no schema, no migration, no
    journal-mode switch), so checking never alters a log a server may be writing. (0, 0) when the
    log does not exist yet; importing bandit.events here would import pyarrow for one query.
    """
    if not events_path.is_file():
        return 0, 0
    db = sqlite3.connect(events_path, timeout=30)
    try:
        shown, offered = db.execute(
            "SELECT COALESCE(SUM(chosen = ?), 0), COUNT(*) FROM decisions WHERE instr(candidates, ?) > 0",
            (artwork_id, json.dumps(artwork_id))).fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot read the event log {events_path} ({exc}); nothing was removed") from None
    finally:
        db.close()
    return int(shown), int(offered)


@cli.command("remove")
@click.argument("artwork_id")
@click.option("--force", is_flag=True,
              help="remove it even if the event log has decisions that offered it (they stay in the log)")
@click.option("--events", "events_path", default=None, type=click.Path(dir_okay=False),
              help="the serving event log [default: STORE.events.db]")
@click.pass_context
@user_errors
def remove(ctx: click.Context, artwork_id: str, force: bool, events_path: str | None) -> None:
    """Remove one candidate artwork (its image, tags and faces) from the catalog.

    Refused when logged decisions offered it, unless --force: offline evaluation and the report
    read those decisions, which keep the artwork id as logged. The event log is never changed.
    """
    store = ctx.obj["store"]
    if events_path is not None and "://" in events_path and not force:
        # A log on a database server would need its client library and credentials for one check;
        # not knowing is not "no decisions".
        raise click.ClickException(f"remove checks the event log for decisions that offered the artwork and reads "
                                   f"SQLite logs only, not {events_path}; pass --force to remove it unchecked")
    events = Path(StorePaths.of(store, events_path).events)
    with open_catalog(ctx, create=False) as catalog:
        art = catalog.artwork(artwork_id)
        if art is None:
            raise StoreError(f"unknown artwork id {artwork_id!r} in {store} (see `artwork show TITLE_ID`)")
        shown, offered = (0, 0) if "://" in str(events_path) else logged_decisions(events, artwork_id)
        if offered and not force:
            raise click.ClickException(
                f"artwork {artwork_id} ({art.title_id}, {art.source}) is in {offered} logged decision(s) "
                f"({shown} showed it) in {events}; offline evaluation and reports read them. Disable it "
                f"instead (POST /v1/artworks/{artwork_id}/disable), or pass --force to remove it anyway "
                f"(the log keeps its decisions)")
        catalog.remove_artwork(artwork_id)
        left = len(catalog.artworks(art.title_id))
    if offered:
        console.print(f"[yellow]warning[/yellow]: {offered} logged decision(s) still name artwork {artwork_id}")
    out.print(Text(f"removed artwork {artwork_id} ({art.source}) from {art.title_id}; {left} candidate(s) left"))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
