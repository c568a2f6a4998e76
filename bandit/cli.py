"""The `artwork` console command: image-side commands from `artwork.cli` plus the decision side."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

import numpy as np

from artwork.cli import cli, console, encoder_label, encoder_options, open_catalog, out, resolve_encoder, user_errors
from artwork.paths import StorePaths
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


def _id_hashes(event_ids: list[str]) -> np.ndarray:
    from bandit.lineage import id_hashes

    return id_hashes(event_ids)


def _trained_rows(path: str) -> tuple[dict, np.ndarray] | None:
    """What `train` recorded about a saved policy's training rows (bandit.lineage, which the engine
    reads too when the file is deployed), or None."""
    from bandit.lineage import trained_rows

    return trained_rows(path)


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
@click.argument("log", type=click.Path(exists=True))
@click.option("--policy", "policies", multiple=True,
              help="policy to evaluate: uniform | fixed | thompson | PATH of a saved policy (repeatable)")
@click.option("--obd-inputs", type=click.Path(exists=True, dir_okay=False), default=None,
              help="LOG is an Open Bandit Dataset CSV: .npz with the target action_dist and q_hat")
@_by_option
@_output_options
@click.option("--ray", "use_ray", is_flag=True,
              help="compute on Ray Data, batch by batch in worker processes (a log bigger than memory): replay, "
                   "IPS and SNIPS, Poisson-bootstrap intervals (needs ray[data])")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="Ray cluster for --ray [default: $RAY_ADDRESS, else a local Ray instance on this machine]")
@user_errors
def replay(log: str, policies: tuple[str, ...], obd_inputs: str | None, by: tuple[str, ...], clusters: int,
           on: str | None, as_json: bool, as_csv: bool, plot_path: str | None, quiet: bool, n_bootstrap: int,
           level: float, seed: int, use_ray: bool, address: str | None) -> None:
    """Estimate policies' click rates offline from a decision log (Parquet) with intervals.

    LOG is one Parquet file or a folder of them (every *.parquet below it, by name). Results go to
    stdout (a table, or --json / --csv), progress and warnings to stderr; a plot is written only with
    --plot. With --ray the rows are read and evaluated by Ray Data workers and only sums come back.
    """
    from bandit.offline import log_arrays, policy_inputs, segment_labels, segments, select_rows
    from bandit.replay import build_inputs, evaluate_policy, format_table, plot_estimates, read_logged_csv

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    if address is not None and not use_ray:
        raise click.UsageError("--address names the Ray cluster for --ray; add --ray")
    if use_ray and obd_inputs:
        raise click.UsageError("--ray reads decision logs in Parquet; an Open Bandit Dataset CSV runs without it")
    if Path(log).is_dir() and obd_inputs:
        raise click.UsageError(f"{log} is a folder; --obd-inputs goes with one Open Bandit Dataset CSV file")
    warnings: list[str] = []
    rows: list[dict] = []
    doc: dict[str, Any] = {"log": log, "level": level, "n_bootstrap": n_bootstrap, "seed": seed}
    results: dict[str, list] = {}
    with _stderr_progress(not quiet) as progress:
        if use_ray:
            from bandit.distributed import RayError, run_replay

            if not policies:
                raise click.UsageError("name at least one --policy to evaluate")
            for spec in policies:
                if spec not in ("uniform", "fixed", "thompson") and not Path(spec).is_file():
                    raise click.BadParameter(f"{spec!r} is neither uniform, fixed, thompson nor a saved policy file",
                                             param_hint="--policy")
            try:
                results, segs, extra, header = run_replay(
                    log, policies, on=on, by=by, n_bootstrap=n_bootstrap, level=level, seed=seed, address=address,
                    progress=progress, warn=lambda m: _warn(warnings, m),
                    note=lambda m: console.print(m, markup=False, highlight=False))
            except RayError as exc:
                raise click.ClickException(str(exc)) from None
            doc.update(extra)
        elif obd_inputs:
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
            if Path(log).is_dir():  # a folder of logs: the files --ray reads, in name order
                from bandit.distributed import log_files

                records = [r for f in log_files(log).files for r in _read_log(f)]
            else:
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


def _newest_split(store: str) -> Path | None:
    """The newest live A/B split snapshot of the store's default event log and snapshot folder, if any."""
    paths = StorePaths.of(store)
    events_path = Path(paths.events)
    if not events_path.is_file():
        return None
    from bandit.events import EventLog
    from bandit.lineage import snapshot_infos

    log = EventLog(events_path)
    try:
        infos = snapshot_infos(log, paths.snapshots)
    finally:
        log.close()
    return next((i.path for i in infos if i.state == "live" and i.path.suffix == ".split"), None)


@cli.command("compare-online")
@click.option("--log", "log", required=True, type=click.Path(exists=True, dir_okay=False),
              help="decision log (Parquet, from `artwork export-log`) of a server run with --ab")
@click.option("--split", "split_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="the A/B split's saved policy (a .split snapshot), whose arms are valued offline on the log's "
                   "exploration slice [default: the newest split snapshot of --store, if any]")
@_by_option
@click.option("--min-segment-rows", default=30, show_default=True, type=click.IntRange(2, None),
              help="segments with fewer rows are left out")
@click.option("--json", "as_json", is_flag=True, help="results as one JSON document on stdout")
@click.option("--csv", "as_csv", is_flag=True, help="results as CSV rows on stdout")
@click.option("--quiet", is_flag=True, help="no progress bars on stderr")
@click.option("--n-bootstrap", default=N_BOOTSTRAP, show_default=True, type=click.IntRange(2, None),
              help=N_BOOTSTRAP_HELP)
@click.option("--level", default=0.95, show_default=True,
              type=click.FloatRange(0, 1, min_open=True, max_open=True), help="confidence level of the intervals")
@click.option("--seed", default=0, show_default=True)
@click.pass_context
@user_errors
def compare_online(ctx: click.Context, log: str, split_path: str | None, by: tuple[str, ...], clusters: int,
                   min_segment_rows: int, as_json: bool, as_csv: bool, quiet: bool, n_bootstrap: int, level: float,
                   seed: int) -> None:
    """The online difference B - A of an A/B test (`serve --ab`), per arm and per segment.

    Each arm's click rate is over the decisions it served (logged "A:..." / "B:...") with a reward;
    the interval on B - A resamples users, the unit the split randomised. Beside it, the offline
    estimate of the same difference (doubly robust, paired bootstrap) on the log's uniform
    exploration slice, when the log has one and the split's policy file is known.
    """
    from bandit.offline import compare_online as run_compare, format_online, online_rows
    from bandit.registry import load_policy
    from bandit.split import SplitPolicy

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    warnings: list[str] = []
    records = _read_log(log, "compare-online")
    policies = None
    split_file = Path(split_path) if split_path else _newest_split(ctx.obj["store"])
    if split_file is not None:
        split = load_policy(split_file)
        if not isinstance(split, SplitPolicy):
            raise click.BadParameter(f"{split_file} holds a {split.kind} policy, not an A/B split", param_hint="--split")
        policies = (split.a, split.b)
    explore = sum(r.policy == "uniform" and r.reward is not None for r in records)
    if policies is None:
        note = "no split policy file (--split) to value offline: online difference only"
    elif explore < 4:
        note = (f"the log has {explore} rewarded exploration rows: no offline estimate (serve with --explore-share "
                "to log a slice)")
        policies = None
    else:
        note = (f"offline: B - A by dr on the {explore:,}-row exploration slice, the arms as {split_file} holds them "
                "(their state then, not their average over the test)")
    with _stderr_progress(not quiet and not (as_json or as_csv)) as progress:
        result = run_compare(records, by=by, clusters=clusters, n_bootstrap=n_bootstrap, level=level, seed=seed,
                             min_segment_rows=min_segment_rows, policies=policies, progress=progress)
    rows = online_rows(result)
    overall = result[0]
    if as_json or as_csv:
        doc = {"log": log, "log_rows": len(records), "level": level, "n_bootstrap": n_bootstrap, "seed": seed,
               "by": list(by), "arms": {"A": overall.a.policies, "B": overall.b.policies},
               "split": str(split_file) if split_file else None, "offline_note": note, "results": rows,
               "warnings": warnings}
        _emit(rows, doc if as_json else None, as_csv)
        return
    out.print(f"{log}: {len(records):,} decisions; A = {', '.join(overall.a.policies)} ({overall.a.users:,} users), "
              f"B = {', '.join(overall.b.policies)} ({overall.b.users:,} users)", markup=False, highlight=False)
    out.print(f"online: each arm's click rate over its own decisions with a reward; B - A with a {level:.0%} "
              f"bootstrap interval resampling users ({n_bootstrap} resamples)\n{note}", markup=False, highlight=False)
    out.print(format_online(result), markup=False, highlight=False)


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
@click.option("--level", default=0.95, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="confidence level of the intervals")
@click.option("--seed", default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="no progress bars on stderr")
@click.pass_context
@user_errors
def report(ctx: click.Context, source: str | None, out_dir: str, policies: tuple[str, ...], n_bootstrap: int,
           window: int, on: str | None, level: float, seed: int, quiet: bool) -> None:
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
    deployed_seq = 0  # learn events the deployed snapshot has learned online
    deployed_file: Path | None = None
    if source is not None:
        from bandit.decisions import DecisionLogError

        try:
            records = read_parquet(source)
        except DecisionLogError as exc:  # a Parquet log, but from a newer build or damaged: its own words
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            raise click.ClickException(f"{source}: not a decision log in Parquet format ({exc})") from None
    else:
        paths = StorePaths.of(store)
        events_path = Path(paths.events)
        if not events_path.is_file():
            raise click.ClickException(f"{store}: no event log next to it ({events_path}); serve with "
                                       f"`artwork --store {store} serve` first, or pass a Parquet log")
        events = EventLog(events_path)
        records = events.records()
        feedback_counts = events.counts()
        snaps = events.snapshots()  # newest first; paths relative to the default snapshot folder
        latest = paths.snapshots / snaps[0][0] if snaps else None
        if latest is not None and latest.is_file():
            named["deployed policy (latest snapshot)"] = load_policy(latest)
            deployed_seq = snaps[0][1]
            deployed_file = latest
        events.close()
    rewarded = [r for r in records if r.reward is not None]
    if not rewarded:
        raise click.ClickException(f"{source or store}: no decision has a reward yet; nothing to evaluate")
    log_name = source or StorePaths.of(store).events
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
    if deployed_seq > 0:
        # Online learning is training: the snapshot has seen (up to) every outcome of the slice.
        learned = min(deployed_seq, sum(r.reward is not None for r in sl.records))
        _warn(warnings, f"the deployed policy learned online from the log's first {deployed_seq} outcomes, which "
                        f"include up to {learned} of the {len(sl.records)} rows it is evaluated on: its estimate is "
                        f"optimistic; for an honest one, evaluate a policy trained on other rows "
                        f"(`artwork train --holdout`, then `artwork replay --on holdout`)")
    trained = _trained_rows(str(deployed_file)) if deployed_file is not None else None
    if trained is not None:  # a promoted or deployed training file: it learned rows offline too
        meta, ids = trained
        seen = int(np.isin(_id_hashes(sorted(r.event_id for r in sl.records)), ids).sum())
        if seen:
            _warn(warnings, f"the deployed policy was trained offline on {seen:,} of the {len(sl.records):,} rows it "
                            f"is evaluated on (trained on {meta.get('log')}): its estimate is optimistic")
    console.print(f"evaluating on {sl.description}", markup=False, highlight=False)
    with _stderr_progress(not quiet) as progress:
        estimates = evaluate_log(sl.records, named, n_bootstrap=n_bootstrap, level=level, seed=seed,
                                 progress=progress)
    curves = {}
    if len(rewarded) >= window:
        k = len(rewarded) // window
        rate = np.array([float(r.reward) for r in rewarded[:k * window]]).reshape(k, window).mean(axis=1)
        curves["logged policy"] = LearningCurve("logged policy", np.arange(1, k + 1) * window, rate, rate, window)
    from bandit.offline import arm_of_record

    ab_test = ""
    if any(arm_of_record(r.policy) is not None for r in rewarded):  # the log holds an online A/B test
        from bandit.offline import compare_online, format_online
        from bandit.split import SplitPolicy

        deployed = named.get("deployed policy (latest snapshot)")
        arms = (deployed.a, deployed.b) if isinstance(deployed, SplitPolicy) else None
        try:
            ab_test = format_online(compare_online(records, n_bootstrap=n_bootstrap, level=level, seed=seed,
                                                   policies=arms))
        except ValueError as exc:  # one arm has no outcome yet: say so instead of a table
            ab_test = str(exc)
        out.print(f"online A/B test:\n{ab_test}", markup=False, highlight=False)
    with Catalog(store, create=False) as catalog:
        data = report_data_from(catalog, records, title=f"Artwork selection report: {Path(source or store).name}",
                                curves=curves, estimates=estimates, feedback_counts=feedback_counts,
                                evaluated_on=sl.description, notes=warnings,
                                policy=named.get("deployed policy (latest snapshot)"))  # its "Policy state"
    data.ab_test = ab_test
    out.print(f"report: {write_report(data, out_dir)}")


@cli.command()
@click.argument("log", type=click.Path(exists=True, dir_okay=False))
@click.argument("out_path", type=click.Path(dir_okay=False))
@click.option("--policy", "kind", default="vw", show_default=True, type=click.Choice(["vw", "bayes"]),
              help="the kind to train (the file records which rows it learned, so `serve --policy OUT` does not "
                   "learn them again)")
@click.option("--exploration", default="squarecb", show_default=True,
              type=click.Choice(EXPLORATIONS), help="VW exploration (only with --policy vw)")
@click.option("--seed", default=0, show_default=True)
@click.option("--holdout", is_flag=True,
              help="learn only the first 80% of the log by time, leaving the rows `--on holdout` evaluates on")
@user_errors
def train(log: str, out_path: str, kind: str, exploration: str, seed: int, holdout: bool) -> None:
    """Warm-start a policy (VW, or bayes) from a decision log (Parquet) and save it (for replay,
    compare or `serve --policy OUT`).

    OUT_PATH's folder must exist: a mistyped folder is an error, not a new directory tree.
    """
    from bandit.decisions import read_parquet
    from bandit.lineage import record_training
    from bandit.registry import make_policy

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
    policy = make_policy(kind, seed=seed, **({"exploration": exploration} if kind == "vw" else {}))
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
    record_training(out_path, log, [r for r in records if r.reward is not None and r.event_id not in skipped])
    out.print(f"learned {n} of {len(records)} decisions -> {out_path} (policy version {policy.version})")


# -- the served policy's snapshots: list, promote, roll back ------------------------------------------


@cli.group("policy")
def policy_group() -> None:
    """The served policy's snapshots: list them, promote a trained file, roll back a deployment.

    promote and rollback change what the next `artwork serve` starts from, so they are refused while
    a server holds the store (README "Deploying a policy").
    """


def _snapshot_options(fn: Any) -> Any:
    fn = click.option("--snapshot-dir", default=None, help="policy snapshots [default: STORE.snapshots/]")(fn)
    return click.option("--events", default=None, metavar="PATH|URL",
                         help="the server's event log [default: STORE.events.db]")(fn)


@contextmanager
def _snapshot_store(ctx: click.Context, events: str | None, snapshot_dir: str | None, action: str | None) -> Iterator[Any]:
    """(event log, snapshot folder) of --store; with `action`, under the store's serve lock."""
    import os

    from bandit.events import EventLogError, is_event_log_url, open_event_log

    store = ctx.obj["store"]
    paths = StorePaths.of(store, events, snapshot_dir)
    spec, folder = paths.events, paths.snapshots
    if not is_event_log_url(spec) and not Path(spec).is_file():
        # Only promote may start a log (a file trained elsewhere, deployed on a new store's first start).
        if action != "promote" or not Path(store).is_file():
            raise click.ClickException(f"no event log at {spec}: nothing has been served from {store} (give "
                                       "--store, or --events for a log elsewhere)")
    lock_fd = None
    if action is not None:
        from bandit.storelock import StoreLocked, lock_store, unlock_store

        try:
            lock_fd = lock_store(spec)
        except StoreLocked as e:
            raise click.ClickException(f"store {store} is {e}: stop the server before `policy {action}` (it changes "
                                       "what the next serve starts from, and a running server would snapshot over "
                                       "it)") from None
        except (OSError, ValueError) as e:
            raise click.ClickException(f"cannot lock {spec}: {e}") from None
    try:
        log = open_event_log(spec)
    except (EventLogError, OSError, ValueError) as e:
        if lock_fd is not None:
            unlock_store(lock_fd)
        raise click.ClickException(f"cannot open the event log {spec}: {e}") from None
    try:
        yield log, folder
    finally:
        log.close()
        if lock_fd is not None:
            unlock_store(lock_fd)


def _when(t: Any) -> str:
    import datetime

    if not isinstance(t, (int, float)):
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


@policy_group.command("list")
@_snapshot_options
@click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
@click.option("--all", "show_all", is_flag=True, help="also the snapshots whose files were pruned")
@click.pass_context
@user_errors
def policy_list(ctx: click.Context, events: str | None, snapshot_dir: str | None, as_json: bool,
                show_all: bool) -> None:
    """The snapshots kept (live, and set aside by a rollback), newest first: name, kind, version,
    learned_seq, created, state, source; `*` marks the current one (the newest live snapshot: what
    the next serve start restores)."""
    import json

    from bandit.lineage import snapshot_infos

    with _snapshot_store(ctx, events, snapshot_dir, None) as (log, folder):
        infos = snapshot_infos(log, folder)
    pruned = sum(i.state == "missing" for i in infos)
    if not show_all:
        infos = [i for i in infos if i.state != "missing"]
    current = next((i.name for i in infos if i.state == "live"), None)
    rows = [{"current": i.name == current, "name": i.name, "kind": i.lineage.get("kind"),
             "policy": i.lineage.get("policy"), "version": i.version, "learned_seq": i.learned_seq,
             "created": i.lineage.get("created"), "source": i.lineage.get("source"), "state": i.state,
             "deployment": i.deployment, "parent": i.lineage.get("parent")} for i in infos]
    if as_json:
        click.echo(json.dumps({"snapshot_dir": str(folder), "current": current, "pruned": pruned,
                               "snapshots": rows}, indent=1))
        return
    if pruned and not show_all:
        console.print(f"({pruned} older snapshot(s) pruned; --all lists them)", markup=False, highlight=False)
    if not rows:
        out.print(f"{folder}: no snapshot recorded yet", markup=False, highlight=False)
        return
    head = ("", "snapshot", "kind", "version", "learned_seq", "created", "state", "deployment", "source")
    lines = [("*" if r["current"] else "", r["name"], str(r["kind"] or "?"), str(r["version"]), str(r["learned_seq"]),
              _when(r["created"]), r["state"], r["deployment"], str(r["source"])) for r in rows]
    widths = [max(len(x[k]) for x in [head, *lines]) for k in range(len(head) - 1)]
    for x in [head, *lines]:
        out.print("  ".join([*(c.ljust(w) for c, w in zip(x, widths)), x[-1]]).rstrip(), markup=False,
                  highlight=False, soft_wrap=True)


@policy_group.command("promote")
@click.argument("file", type=click.Path(dir_okay=False))
@_snapshot_options
@click.pass_context
@user_errors
def policy_promote(ctx: click.Context, file: str, events: str | None, snapshot_dir: str | None) -> None:
    """Record the saved policy FILE as the newest snapshot: the next serve start restores it and
    learns every finalized event of the log, less the rows FILE's training recorded."""
    from bandit.lineage import promote

    with _snapshot_store(ctx, events, snapshot_dir, "promote") as (log, folder):
        lin = promote(log, folder, file)
    out.print(f"promoted {file} -> {folder / lin['snapshot']} ({lin['kind']}, version {lin['version']}"
              + (f", {lin['trained_rows']:,} rows learned offline" if lin["trained_rows"] else "")
              + "); the next `artwork serve` restores it", markup=False, highlight=False, soft_wrap=True)


@policy_group.command("rollback")
@click.option("--to", "to", default=None, metavar="SNAPSHOT",
              help="go back to this live snapshot (see `artwork policy list`) [default: the newest snapshot of the "
                   "previous deployment]")
@_snapshot_options
@click.pass_context
@user_errors
def policy_rollback(ctx: click.Context, to: str | None, events: str | None, snapshot_dir: str | None) -> None:
    """Undo the current deployment: its snapshots are set aside (moved to SNAPSHOT_DIR/set-aside/,
    not deleted) and the previous deployment's newest snapshot is current again; the next serve
    start restores it and learns the events since it was written."""
    from bandit.lineage import rollback

    with _snapshot_store(ctx, events, snapshot_dir, "rollback") as (log, folder):
        lin, aside = rollback(log, folder, to=to)
    out.print(f"rolled back to {lin['parent']} ({lin.get('kind', '?')}, version {lin.get('version')}, learned_seq "
              f"{lin.get('learned_seq')}) as {lin['snapshot']}; set aside: {', '.join(aside) or 'nothing'}; the next "
              f"`artwork serve` restores it", markup=False, highlight=False, soft_wrap=True)


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
        events_path = Path(StorePaths.of(ctx.obj["store"]).events)
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
