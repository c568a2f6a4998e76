"""The `artwork` console command: image-side commands from `artwork.cli` plus the decision side."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

import numpy as np

from artwork.cli import cli, console, encoder_label, encoder_options, open_catalog, out, resolve_encoder, user_errors
from artwork.store import Catalog
from bandit.policy import EXPLORATIONS

# No fastapi, uvicorn, torch or matplotlib at import: `artwork --help` and the light commands must
# start in well under a second. `serve` is built on first use (cli.add_lazy_command below), and
# each command imports what it needs inside its own body.


def _serve() -> click.Command:
    """bandit.server's serve command, with --events documented for PostgreSQL URLs (a copy: the
    original stays as it is for `python -m bandit.server`). The server itself takes either."""
    import copy

    from bandit.server import serve_command

    cmd = copy.copy(serve_command)
    cmd.params = [copy.copy(p) for p in serve_command.params]
    for p in cmd.params:
        if p.name == "events":
            p.help = ("event log: a SQLite file, or postgresql://USER@HOST[:PORT]/DATABASE for choosers on several "
                      "machines (put the password in $PGPASSWORD or ~/.pgpass, not in a URL that `ps` shows) "
                      "[default: STORE.events.db]")
            p.metavar = "PATH|URL"
    return cmd


cli.add_lazy_command("serve", "bandit.cli:_serve",
                     "Serve the decision API over HTTP (uvicorn; OpenAPI at /docs and /openapi.json).")



# -- one flag vocabulary: the same name and default for the same meaning in every command ----------

#: Bootstrap resamples behind every interval (replay, compare, report): one default, so the same log
#: gives the same intervals whichever command shows them.
N_BOOTSTRAP = 1000
N_BOOTSTRAP_HELP = "bootstrap resamples behind each interval"
#: Where an HTML report goes: `--out` in every command that writes one (demo, report).
REPORT_OUT_HELP = "folder for the HTML report (index.html and its images)"


def _take_alias(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """The value of a deprecated alias (`_deprecated_alias`) when it was given instead of this option."""
    alias = ctx.meta.get(f"deprecated alias of {param.name}")
    if alias is None:
        return value
    old, alias_value = alias
    if ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE and value != alias_value:
        new = param.opts[0]
        raise click.UsageError(f"{old} {alias_value} and {new} {value} name two places; give {new} only", ctx)
    return alias_value


def _deprecated_alias(old: str, new: str, dest: str, **kw: Any) -> Any:
    """A hidden option `old` that still sets `dest` (the option `new`, whose callback is `_take_alias`),
    with a one-line note on stderr: scripts written for the old name keep working."""
    def note(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None:
            return
        click.echo(f"note: {old} is deprecated; use {new}", err=True)
        if (ctx.get_parameter_source(dest) == click.core.ParameterSource.COMMANDLINE
                and ctx.params.get(dest, value) != value):
            raise click.UsageError(f"{new} {ctx.params[dest]} and {old} {value} name two places; give {new} only", ctx)
        ctx.meta[f"deprecated alias of {dest}"] = (old, value)

    # Its own parameter name: `--report-dir` would otherwise be named report_dir, the demo's dest.
    return click.option(old, "deprecated_" + old.lstrip("-").replace("-", "_"), default=None, hidden=True,
                        expose_value=False, callback=note, **kw)


@cli.command()
@encoder_options
@click.option("--visits", default=1500, show_default=True, help="simulated page views (each shows every title)")
@click.option("--segments", default=3, show_default=True, help="taste segments of the simulated audience")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", "report_dir", default="report", show_default=True, type=click.Path(file_okay=False),
              callback=_take_alias, help=REPORT_OUT_HELP)
@_deprecated_alias("--report-dir", "--out", "report_dir", type=click.Path(file_okay=False))
@click.option("--quiet", is_flag=True, help="no progress bars")
@click.pass_context
@user_errors
def demo(ctx: click.Context, visits: int, segments: int, seed: int, report_dir: str, quiet: bool, **enc: Any) -> None:
    """The main job: sample catalog → HTTP service → simulated audience → offline evaluation → report.

    Ends with clicks per title, the side-by-side table (served policy, per-title Thompson on the same
    visits, best fixed artwork, oracle, uniform), its verdict and where the report is.
    """
    from bandit.demo import DemoConfig, run_demo
    from bandit.report import format_comparison

    if visits < 1 or segments < 1:
        raise click.BadParameter("--visits and --segments must be at least 1")
    with open_catalog(ctx) as catalog:
        encoder = resolve_encoder(catalog, **enc)
    console.print(f"encoder: {encoder_label(encoder.encoder_id)}")
    cfg = DemoConfig(visits=visits, segments=segments, seed=seed, report_dir=Path(report_dir), progress=not quiet)
    result = run_demo(ctx.obj["store"], encoder, cfg, say=lambda m: console.print(m, markup=False))
    if result.comparison is not None:
        out.print(format_comparison(result.comparison), markup=False, highlight=False, soft_wrap=True)
    out.print(f"report: {result.report}", markup=False, highlight=False, soft_wrap=True)


def policy_by_name(spec: str, records: list) -> tuple[str, object]:
    """uniform | fixed | thompson (fitted on the log itself) | path to a saved policy."""
    from bandit.baselines import FixedPolicy, ThompsonPolicy, UniformPolicy
    from bandit.policy import load_policy

    if spec == "uniform":
        return spec, UniformPolicy()
    if spec == "fixed":
        return spec, FixedPolicy()
    if spec == "thompson":
        pol = ThompsonPolicy()
        pol.learn_many(records)
        return "thompson (fit on this log)", pol
    if not Path(spec).is_file():
        raise click.BadParameter(f"{spec!r} is neither uniform, fixed, thompson nor a saved policy file",
                                 param_hint="--policy")
    return Path(spec).name, load_policy(spec)


# -- offline evaluation: replay and compare share the log, slice, policy and output plumbing -------

ON_HELP = ("rows to evaluate on: explore = the uniform exploration pages, holdout = the last 20% by time, "
           "all = every row [default: explore when the log has an exploration slice, else holdout]")


def _read_log(log: str, command: str = "replay") -> list:
    """The decision log at LOG, or one line saying what was expected instead."""
    from bandit.decisions import DecisionLogError, read_parquet

    try:
        return read_parquet(log)
    except DecisionLogError as exc:  # a log, but not one this version reads: its own message says why
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        expected = (f"{command} reads a decision log in Parquet (from `artwork export-log`)"
                    + (", or an Open Bandit Dataset CSV together with --obd-inputs NPZ (the evaluation policy's "
                       "action_dist and q_hat)" if command == "replay" else ""))
        if Path(log).suffix.lower() == ".csv":
            raise click.ClickException(f"{log} is a CSV file without --obd-inputs: {expected}") from None
        raise click.ClickException(f"{log}: not a decision log in Parquet format ({exc}); {expected}") from None


@contextmanager
def _stderr_progress(enabled: bool) -> Iterator[Any]:
    """``progress(step, done, total)`` drawn as one rich bar per step on stderr (total 0: unknown),
    so stdout carries only results and stays parseable."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def report(step: str, done: float, total: float) -> None:
            task = tasks.get(step)
            if task is None:
                task = tasks[step] = bar.add_task(step, total=total or None)
            bar.update(task, completed=done, total=total or None)

        yield report


def _warn(warnings: list[str], message: str) -> None:
    warnings.append(message)
    console.print(f"[bold red]WARNING[/bold red] {message}", highlight=False)


TRAINED_ON = "trained_on.json"
TRAINED_IDS = "trained_on_ids.u64"


def _id_hashes(event_ids: list[str]) -> np.ndarray:
    """64-bit hashes of event ids: a compact, exact-enough record of which rows a policy learned."""
    import hashlib

    return np.array(sorted(int.from_bytes(hashlib.blake2b(e.encode(), digest_size=8).digest(), "little")
                           for e in event_ids), dtype="<u8")


def _record_training(path: str, log: str, learned: list) -> None:
    """Add which log rows the policy learned to its saved zip (members the loaders ignore)."""
    import json
    import os
    import shutil
    import tempfile
    import zipfile

    meta = {"log": Path(log).name, "rows": len(learned), "time_min": min(r.time for r in learned),
            "time_max": max(r.time for r in learned), "event_ids": f"blake2b-8 of each event id, sorted, in "
                                                                  f"{TRAINED_IDS}"}
    fd, tmp = tempfile.mkstemp(dir=str(Path(path).parent), prefix=f".{Path(path).name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(path, tmp)
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(TRAINED_ON, json.dumps(meta, sort_keys=True))
            z.writestr(TRAINED_IDS, _id_hashes([r.event_id for r in learned]).tobytes())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _trained_rows(path: str) -> tuple[dict, np.ndarray] | None:
    """What `train` recorded about a saved policy's training rows, or None (not recorded)."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read(TRAINED_ON))
            ids = np.frombuffer(z.read(TRAINED_IDS), dtype="<u8")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return meta, ids


def _policies(specs: tuple[str, ...], records: list, evaluated: list, warnings: list[str]) -> dict[str, Any]:
    """Name -> policy for each spec, warning loudly about any policy graded on rows it learned.

    thompson is fitted on the log's rewarded rows outside the evaluation slice (on all of them
    only when the slice is the whole log, with a warning); a saved policy file is checked against
    the rows `train` recorded in it.
    """
    from bandit.baselines import FixedPolicy, ThompsonPolicy, UniformPolicy
    from bandit.policy import load_policy

    ev_ids = {r.event_id for r in evaluated}
    outside = [r for r in records if r.reward is not None and r.event_id not in ev_ids]
    named: dict[str, Any] = {}
    for spec in specs:
        if spec == "uniform":
            named[spec] = UniformPolicy()
        elif spec == "fixed":
            named[spec] = FixedPolicy()
        elif spec == "thompson":
            pol = ThompsonPolicy()
            if outside:
                pol.learn_many(outside)
                named[f"thompson (fit on {len(outside):,} rows outside the slice)"] = pol
            else:
                pol.learn_many(records)
                named["thompson (fit on this log)"] = pol
                _warn(warnings, f"thompson was fitted on the same {len(evaluated):,} rows it is evaluated on: its "
                                "estimates are optimistic (use --on explore or --on holdout)")
        elif Path(spec).is_file():
            named[Path(spec).name] = load_policy(spec)
            trained = _trained_rows(spec)
            if trained is None:
                console.print(f"note: {spec} does not record which rows it learned (only `artwork train` "
                              "records them): if it learned from this log, its estimates are optimistic",
                              markup=False, highlight=False)
                continue
            meta, ids = trained
            seen = int(np.isin(_id_hashes(sorted(ev_ids)), ids).sum())
            if seen:
                _warn(warnings, f"{Path(spec).name} learned {seen:,} of the {len(evaluated):,} rows evaluated here "
                                f"(trained on {meta.get('log')}, {meta.get('rows'):,} rows): it is graded on clicks "
                                "it has seen, so its estimates are optimistic. Evaluate it on rows it did not learn: "
                                "`artwork train --holdout` then `--on holdout`, or another log")
        else:
            raise click.BadParameter(f"{spec!r} is neither uniform, fixed, thompson nor a saved policy file",
                                     param_hint="--policy")
    return named


def _emit(rows: list[dict], as_json: dict | None, as_csv: bool) -> None:
    """Machine-readable results on stdout: the whole document as JSON, or the rows as CSV."""
    import csv
    import io
    import json

    if as_json is not None:
        click.echo(json.dumps(as_json, indent=1, allow_nan=False, default=_json_safe))
    elif as_csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(buf.getvalue(), nl=False)


def _json_safe(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _finite(x: float) -> float | None:
    return None if x != x or x in (float("inf"), float("-inf")) else float(x)


def _output_options(fn: Any) -> Any:
    for opt in reversed([
        click.option("--on", "on", type=click.Choice(["explore", "holdout", "all"]), default=None, help=ON_HELP),
        click.option("--json", "as_json", is_flag=True, help="results as one JSON document on stdout"),
        click.option("--csv", "as_csv", is_flag=True, help="results as CSV rows on stdout"),
        click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
                     help="also write a PNG of the estimates here"),
        click.option("--quiet", is_flag=True, help="no progress bars on stderr"),
        click.option("--n-bootstrap", default=N_BOOTSTRAP, show_default=True, type=click.IntRange(2, None),
                     help=N_BOOTSTRAP_HELP),
        click.option("--level", default=0.95, show_default=True, type=click.FloatRange(0, 1, min_open=True,
                                                                                        max_open=True),
                     help="confidence level of the intervals"),
        click.option("--seed", default=0, show_default=True),
    ]):
        fn = opt(fn)
    return fn


# bandit.offline.SEGMENT_FIELDS, spelled out so that `artwork --help` does not import the evaluation stack.
SEGMENT_FIELDS = ("device", "country", "hour", "row", "taste-cluster")


def _by_option(fn: Any) -> Any:
    fn = click.option("--clusters", default=3, show_default=True, type=click.IntRange(1, None),
                      help="taste clusters for --by taste-cluster (k-means)")(fn)
    return click.option("--by", "by", multiple=True, type=click.Choice(SEGMENT_FIELDS),
                        help="also per segment of this logged context field (repeatable)")(fn)


@cli.command()
@click.argument("log", type=click.Path(exists=True, dir_okay=False))
@click.option("--policy", "policies", multiple=True,
              help="policy to evaluate: uniform | fixed | thompson | PATH of a saved policy (repeatable)")
@click.option("--obd-inputs", type=click.Path(exists=True, dir_okay=False), default=None,
              help="LOG is an Open Bandit Dataset CSV: .npz with the target action_dist and q_hat")
@_by_option
@_output_options
@user_errors
def replay(log: str, policies: tuple[str, ...], obd_inputs: str | None, by: tuple[str, ...], clusters: int,
           on: str | None, as_json: bool, as_csv: bool, plot_path: str | None, quiet: bool, n_bootstrap: int,
           level: float, seed: int) -> None:
    """Estimate policies' click rates offline from a decision log (Parquet) with intervals.

    Results go to stdout (a table, or --json / --csv), progress and warnings to stderr; a plot is
    written only with --plot.
    """
    from bandit.offline import log_arrays, policy_inputs, segment_labels, segments, select_rows
    from bandit.replay import build_inputs, evaluate_policy, format_table, plot_estimates, read_logged_csv

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    warnings: list[str] = []
    rows: list[dict] = []
    doc: dict[str, Any] = {"log": log, "level": level, "n_bootstrap": n_bootstrap, "seed": seed}
    results: dict[str, list] = {}
    with _stderr_progress(not quiet) as progress:
        if obd_inputs:
            if by or on:
                raise click.UsageError("--by and --on need a decision log; an OBD CSV has no logged context")
            cols = read_logged_csv(log)
            with np.load(obd_inputs) as arrays:
                for key in ("action_dist", "q_hat"):
                    if key not in arrays:
                        raise click.ClickException(f"{obd_inputs}: no array {key!r}; expected action_dist and q_hat "
                                                   f"(n, n_items, n_positions), found {', '.join(arrays.files)}")
                inputs = build_inputs(arrays["action_dist"], cols["item_id"].astype(int), cols["click"],
                                      cols["propensity_score"], q_hat=arrays["q_hat"],
                                      position=cols["position"].astype(int) - 1)
            results["evaluation policy"] = evaluate_policy(inputs, n_bootstrap=n_bootstrap, level=level, seed=seed)
            doc.update(rows=inputs.n, logged_click_rate=float(inputs.reward.mean()), on=None)
            header = f"{log}: {inputs.n} rows (Open Bandit Dataset), logged click rate {inputs.reward.mean():.4f}"
            segs: dict[str, dict[str, Any]] = {}
        else:
            if not policies:
                raise click.UsageError("name at least one --policy to evaluate")
            records = _read_log(log)
            sl = select_rows(records, on)
            named = _policies(policies, records, sl.records, warnings)
            arrays_ = log_arrays(sl.records, progress=progress)
            inputs_by = {name: policy_inputs(p, sl.records, arrays_, progress, f"{name}: probabilities")
                         for name, p in named.items()}
            for name, inp in inputs_by.items():
                results[name] = evaluate_policy(inp, n_bootstrap=n_bootstrap, level=level, seed=seed,
                                                progress=progress)
            logged = float(np.mean([r.reward for r in sl.records]))
            doc.update(rows=len(sl.records), log_rows=len(records), logged_click_rate=logged, on=sl.name,
                       on_description=sl.description)
            header = (f"{log}: {len(records)} decisions; evaluated on {sl.description}; logged click rate "
                      f"{logged:.4f}")
            segs = {}
            for field_name in by:
                groups = segments(segment_labels(sl.records, field_name, clusters=clusters, seed=seed))
                segs[field_name] = {label: {name: evaluate_policy(inp.take(idx), n_bootstrap=n_bootstrap,
                                                                  level=level, seed=seed)
                                            for name, inp in inputs_by.items()}
                                    for label, idx in groups.items() if idx.size >= 2}
    for name, ests in results.items():
        rows += [{"policy": name, "by": "", "segment": "all", "estimator": e.name, "value": _finite(e.value),
                  "low": _finite(e.low), "high": _finite(e.high), "n": e.n, "level": e.level} for e in ests]
    for field_name, groups_ in segs.items():
        for label, by_policy in groups_.items():
            for name, ests in by_policy.items():
                rows += [{"policy": name, "by": field_name, "segment": label, "estimator": e.name,
                          "value": _finite(e.value), "low": _finite(e.low), "high": _finite(e.high), "n": e.n,
                          "level": e.level} for e in ests]
    if plot_path:
        plot_estimates(results, plot_path)
        console.print(f"plot: {plot_path}", markup=False, highlight=False)
    if as_json or as_csv:
        _emit(rows, {**doc, "results": rows, "warnings": warnings} if as_json else None, as_csv)
        return
    out.print(header, markup=False, highlight=False)
    for name, ests in results.items():
        out.print(f"\n[bold]{name}[/bold]")
        out.print(format_table(ests), markup=False)
    for field_name, groups_ in segs.items():
        for label, by_policy in groups_.items():
            for name, ests in by_policy.items():
                out.print(f"\n[bold]{name}[/bold], {field_name} = {label} ({ests[0].n} rows)" if ests else "")
                out.print(format_table(ests), markup=False)


@cli.command()
@click.argument("policy_a", metavar="A")
@click.argument("policy_b", metavar="B")
@click.option("--log", "log", required=True, type=click.Path(exists=True, dir_okay=False),
              help="decision log (Parquet, from `artwork export-log`)")
@_by_option
@click.option("--min-segment-rows", default=30, show_default=True, type=click.IntRange(2, None),
              help="segments with fewer rows are left out")
@_output_options
@user_errors
def compare(policy_a: str, policy_b: str, log: str, by: tuple[str, ...], clusters: int, min_segment_rows: int,
            on: str | None, as_json: bool, as_csv: bool, plot_path: str | None, quiet: bool, n_bootstrap: int,
            level: float, seed: int) -> None:
    """The value difference A - B of two policies on one log, with a paired bootstrap interval.

    A and B are each uniform | fixed | thompson | PATH of a saved policy. Every estimator's value
    of A, of B and of A - B is computed on the same resampled rows, so the interval on the
    difference leaves out the noise the two share; "A" or "B" marks an interval that excludes 0.
    """
    from bandit.offline import comparison_rows, compare_log, format_comparisons, select_rows
    from bandit.replay import plot_estimates

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if policy_a == policy_b:
        raise click.UsageError(f"A and B are the same policy ({policy_a}); name two different ones")
    warnings: list[str] = []
    records = _read_log(log, "compare")
    sl = select_rows(records, on)
    named = _policies((policy_a, policy_b), records, sl.records, warnings)
    if len(named) != 2:
        raise click.UsageError(f"A and B name the same policy ({', '.join(named)}); name two different ones")
    (name_a, pol_a), (name_b, pol_b) = named.items()
    with _stderr_progress(not quiet) as progress:
        result = compare_log(sl.records, pol_a, pol_b, by=by, clusters=clusters, n_bootstrap=n_bootstrap,
                             level=level, seed=seed, min_segment_rows=min_segment_rows, progress=progress,
                             names=(name_a, name_b))
    rows = comparison_rows(result)
    logged = float(np.mean([r.reward for r in sl.records]))
    if plot_path:
        # The differences with their paired intervals: the whole slice, then each segment.
        plot_estimates({("all" if s.by is None else f"{s.by} = {s.segment}"): [c.diff for c in s.results]
                        for s in result}, plot_path, title=f"A - B: {name_a} minus {name_b} (paired bootstrap)")
        console.print(f"plot: {plot_path}", markup=False, highlight=False)
    if as_json or as_csv:
        doc = {"log": log, "a": name_a, "b": name_b, "rows": len(sl.records), "log_rows": len(records),
               "on": sl.name, "on_description": sl.description, "logged_click_rate": logged, "level": level,
               "n_bootstrap": n_bootstrap, "seed": seed, "paired": True, "by": list(by), "results": rows,
               "warnings": warnings}
        _emit(rows, doc if as_json else None, as_csv)
        return
    out.print(f"{log}: {len(records)} decisions; evaluated on {sl.description}; logged click rate {logged:.4f}",
              markup=False, highlight=False)
    out.print(f"A = {name_a}\nB = {name_b}\nA - B with {level:.0%} paired bootstrap intervals "
              f"({n_bootstrap} resamples of the rows, both policies on each)", markup=False, highlight=False)
    out.print(format_comparisons(result, level), markup=False, highlight=False)


@cli.command()
@click.argument("source", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", default="report", show_default=True, type=click.Path(file_okay=False),
              callback=_take_alias, help=REPORT_OUT_HELP)
@_deprecated_alias("--report-dir", "--out", "out_dir", type=click.Path(file_okay=False))
@click.option("--policy", "policies", multiple=True,
              help="also evaluate: uniform | fixed | thompson | PATH of a saved policy (repeatable)")
@click.option("--n-bootstrap", default=N_BOOTSTRAP, show_default=True, type=click.IntRange(2, None),
              help=N_BOOTSTRAP_HELP)
@click.option("--window", default=500, show_default=True, help="decisions per point of the click-rate curve")
@click.option("--on", "on", type=click.Choice(["explore", "holdout", "all"]), default=None, help=ON_HELP)
@click.pass_context
@user_errors
def report(ctx: click.Context, source: str | None, out_dir: str, policies: tuple[str, ...], n_bootstrap: int,
           window: int, on: str | None) -> None:
    """The evaluation report for a deployment: the --store catalog and its event log, or SOURCE, an
    exported Parquet log (with the --store catalog for the artwork). `report STORE.db` is deprecated."""
    from bandit.decisions import read_parquet
    from bandit.events import EventLog
    from bandit.learning import LearningCurve
    from bandit.offline import evaluate_log, select_rows
    from bandit.policy import load_policy
    from bandit.report import catalog_coverage, report_data_from, write_report

    store, named = ctx.obj["store"], {}
    if source is not None and not source.endswith(".parquet"):
        # The old positional form: the store is --store's, as in every other command.
        given = ctx.obj.get("store_given")
        if given is not None and given != source:
            raise click.UsageError(f"two catalogs given: {source} and --store {given}; give only --store")
        console.print(f"note: `artwork report {source}` is deprecated; use `artwork --store {source} report`",
                      markup=False)
        store, source = source, None
    feedback_counts = None  # late clicks and expired feedback: only the event log knows them
    if source is not None:
        from bandit.decisions import DecisionLogError

        try:
            records = read_parquet(source)
        except DecisionLogError as exc:  # a Parquet log, but from a newer build or damaged: its own words
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            raise click.ClickException(f"{source}: not a decision log in Parquet format ({exc})") from None
    else:
        events_path = Path(f"{store}.events.db")
        if not events_path.is_file():
            raise click.ClickException(f"{store}: no event log next to it ({events_path}); serve with "
                                       f"`artwork --store {store} serve` first, or pass a Parquet log")
        events = EventLog(events_path)
        records = events.records()
        feedback_counts = events.counts()
        snaps = events.snapshots()  # newest first; paths relative to the default snapshot folder
        latest = Path(f"{store}.snapshots") / snaps[0][0] if snaps else None
        if latest is not None and latest.is_file():
            named["deployed policy (latest snapshot)"] = load_policy(latest)
        events.close()
    rewarded = [r for r in records if r.reward is not None]
    if not rewarded:
        raise click.ClickException(f"{source or store}: no decision has a reward yet; nothing to evaluate")
    log_name = source or f"{store}.events.db"
    with Catalog(store, create=False) as catalog:
        cover = catalog_coverage(records, (a.artwork_id for a in catalog.all_artworks()),
                                 (t.title_id for t in catalog.titles()))
    if cover.mismatch:
        raise click.ClickException(
            f"{log_name} does not belong to the catalog {store}: {len(cover.missing_artworks)} of the "
            f"{cover.artworks} artwork ids it logged (and {len(cover.missing_titles)} of its {cover.titles} titles) "
            f"are not in {store} (first: {', '.join(cover.missing_artworks[:3])}); give the catalog the log was "
            f"served from with --store")
    if cover.missing_artworks:
        console.print(f"warning: {len(cover.missing_artworks)} of the {cover.artworks} artwork ids in {log_name} are "
                      f"no longer in {store} (removed since?); the report lists them without images",
                      markup=False, highlight=False)
    sl = select_rows(records, on)
    warnings: list[str] = []
    named.update(_policies(policies, records, sl.records, warnings))
    named.setdefault("uniform", policy_by_name("uniform", records)[1])
    console.print(f"evaluating on {sl.description}", markup=False, highlight=False)
    with _stderr_progress(True) as progress:
        estimates = evaluate_log(sl.records, named, n_bootstrap=n_bootstrap, progress=progress)
    curves = {}
    if len(rewarded) >= window:
        k = len(rewarded) // window
        rate = np.array([float(r.reward) for r in rewarded[:k * window]]).reshape(k, window).mean(axis=1)
        curves["logged policy"] = LearningCurve("logged policy", np.arange(1, k + 1) * window, rate, rate, window)
    with Catalog(store, create=False) as catalog:
        data = report_data_from(catalog, records, title=f"Artwork selection report: {Path(source or store).name}",
                                curves=curves, estimates=estimates, feedback_counts=feedback_counts,
                                evaluated_on=sl.description, notes=warnings)
    out.print(f"report: {write_report(data, out_dir)}")


@cli.command()
@click.argument("log", type=click.Path(exists=True, dir_okay=False))
@click.argument("out_path", type=click.Path(dir_okay=False))
@click.option("--exploration", default="squarecb", show_default=True,
              type=click.Choice(EXPLORATIONS))
@click.option("--seed", default=0, show_default=True)
@click.option("--holdout", is_flag=True,
              help="learn only the first 80% of the log by time, leaving the rows `--on holdout` evaluates on")
@user_errors
def train(log: str, out_path: str, exploration: str, seed: int, holdout: bool) -> None:
    """Warm-start a VW policy from a decision log (Parquet) and save it (for replay or serving).

    OUT_PATH's folder must exist: a mistyped folder is an error, not a new directory tree.
    """
    from bandit.decisions import read_parquet
    from bandit.policy import VWConfig, VWPolicy

    folder = Path(out_path).parent
    if not folder.is_dir():  # checked before learning: a typo should not cost the training run
        raise click.ClickException(f"{out_path}: folder {folder} does not exist; create it first "
                                   f"(mkdir -p {folder}) or save elsewhere")
    try:
        records = read_parquet(log)
    except Exception as exc:
        raise click.ClickException(f"{log}: not a decision log in Parquet format ({exc})") from None
    if holdout:
        from bandit.offline import select_rows

        held = {r.event_id for r in select_rows(records, "holdout").records}
        records = [r for r in records if r.event_id not in held]
    policy = VWPolicy(VWConfig(exploration=exploration, seed=seed))
    n = policy.learn_many(records)
    if policy.skipped:
        eid, why = policy.skipped[0]
        click.echo(f"skipped {len(policy.skipped)} logged decision(s) that cannot be learned "
                   f"(first: event {eid}: {why})", err=True)
    if n == 0:
        raise click.ClickException(f"{log}: no decision has a reward; nothing to learn from")
    policy.save(out_path)
    # Which rows it learned, so that replay and compare can warn when it is graded on them.
    skipped = {eid for eid, _ in policy.skipped}
    _record_training(out_path, log, [r for r in records if r.reward is not None and r.event_id not in skipped])
    out.print(f"learned {n} of {len(records)} decisions -> {out_path} (policy version {policy.version})")


@cli.command("export-log")
@click.argument("out_path", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["parquet", "obp", "dsjson"]), default=None,
              help="parquet: every decision; obp: Open Bandit Pipeline arrays (.npz); dsjson: Vowpal Wabbit's "
                   "decision-service JSON lines [default: from OUT_PATH's suffix (.npz, .json/.jsonl/.dsjson), "
                   "else parquet]")
@click.option("--log", "log", type=click.Path(exists=True, dir_okay=False), default=None,
              help="convert this Parquet decision log instead of the store's event log")
@click.pass_context
@user_errors
def export_log(ctx: click.Context, out_path: str, fmt: str | None, log: str | None) -> None:
    """Export the store's decision log (decisions, propensities, rewards) as Parquet, OBP or DSJSON.

    OBP and DSJSON hold the decisions with a reward; Parquet holds every one.
    """
    from bandit.events import EventLog
    from bandit.export import export_log as write_export
    from bandit.export import infer_format

    fmt = infer_format(out_path, fmt)  # a contradiction with the suffix fails before reading anything
    if log is not None:
        records = _read_log(log, "export-log")
        source = log
    else:
        events_path = Path(f"{ctx.obj['store']}.events.db")
        if not events_path.is_file():
            raise click.ClickException(f"no event log at {events_path}: nothing has been served from this store")
        events = EventLog(events_path)
        try:
            records = events.records()
        finally:
            events.close()
        source = str(events_path)
    done = write_export(records, out_path, fmt)
    rewarded = sum(r.reward is not None for r in records)
    if done.format == "parquet":
        out.print(f"{len(records)} decisions ({rewarded} with a reward) -> {out_path}", markup=False,
                  highlight=False)
    else:
        out.print(f"{done.rows} decisions with a reward -> {out_path} ({done.format})", markup=False, highlight=False)
        if done.left_out:
            console.print(f"note: {done.left_out} decision(s) of {source} have no reward yet and are not in "
                          f"{out_path}", markup=False, highlight=False)


def run_subcommand(name: str, argv: list[str], prog_name: str) -> None:
    """Run one subcommand as a standalone script (every command takes `--store` itself)."""
    cli.main([name, *argv], prog_name=prog_name)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
