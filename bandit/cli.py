"""The `artwork` console command: image-side commands from `artwork.cli` plus the decision side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

import numpy as np

from artwork.cli import cli, console, encoder_label, encoder_options, open_catalog, out, resolve_encoder, user_errors
from artwork.store import Catalog
from bandit.learning import LearningCurve
from bandit.policy import EXPLORATIONS
from bandit.server import serve_command

cli.add_command(serve_command, "serve")



@cli.command()
@encoder_options
@click.option("--visits", default=1500, show_default=True, help="simulated page views (each shows every title)")
@click.option("--segments", default=3, show_default=True, help="taste segments of the simulated audience")
@click.option("--seed", default=0, show_default=True)
@click.option("--report-dir", default="report", show_default=True, type=click.Path(file_okay=False),
              help="where report/index.html goes")
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


@cli.command()
@click.argument("log", type=click.Path(exists=True, dir_okay=False))
@click.option("--policy", "policies", multiple=True,
              help="policy to evaluate: uniform | fixed | thompson | PATH of a saved policy (repeatable)")
@click.option("--obd-inputs", type=click.Path(exists=True, dir_okay=False), default=None,
              help="LOG is an Open Bandit Dataset CSV: .npz with the target action_dist and q_hat")
@click.option("--plot", "plot_path", default="replay.png", show_default=True, help="PNG of the estimates")
@click.option("--n-bootstrap", default=1000, show_default=True)
@click.option("--level", default=0.95, show_default=True, help="confidence level of the intervals")
@click.option("--seed", default=0, show_default=True)
@user_errors
def replay(log: str, policies: tuple[str, ...], obd_inputs: str | None, plot_path: str, n_bootstrap: int,
           level: float, seed: int) -> None:
    """Estimate policies' click rates offline from a decision log (Parquet) with intervals."""
    import numpy as np

    from bandit.decisions import read_parquet
    from bandit.offline import evaluate_log
    from bandit.replay import build_inputs, evaluate_policy, format_table, plot_estimates, read_logged_csv

    if obd_inputs:
        cols = read_logged_csv(log)
        arrays = np.load(obd_inputs)
        inputs = build_inputs(arrays["action_dist"], cols["item_id"].astype(int), cols["click"],
                              cols["propensity_score"], q_hat=arrays["q_hat"],
                              position=cols["position"].astype(int) - 1)
        results = {"evaluation policy": evaluate_policy(inputs, n_bootstrap=n_bootstrap, level=level, seed=seed)}
    else:
        if not policies:
            raise click.UsageError("name at least one --policy to evaluate")
        try:
            records = read_parquet(log)
        except Exception as exc:
            raise click.ClickException(f"{log}: not a decision log in Parquet format ({exc})") from None
        named = dict(policy_by_name(p, records) for p in policies)
        results = evaluate_log(records, named, n_bootstrap=n_bootstrap, level=level, seed=seed)
        logged = np.mean([r.reward for r in records if r.reward is not None])
        out.print(f"{log}: {len(records)} decisions, logged click rate {logged:.4f}")
    for name, ests in results.items():
        out.print(f"\n[bold]{name}[/bold]")
        out.print(format_table(ests), markup=False)
    plot_estimates(results, plot_path)
    out.print(f"\nplot: {plot_path}")


@cli.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", default="report", show_default=True, type=click.Path(file_okay=False))
@click.option("--policy", "policies", multiple=True,
              help="also evaluate: uniform | fixed | thompson | PATH of a saved policy (repeatable)")
@click.option("--n-bootstrap", default=500, show_default=True)
@click.option("--window", default=500, show_default=True, help="decisions per point of the click-rate curve")
@click.pass_context
@user_errors
def report(ctx: click.Context, source: str, out_dir: str, policies: tuple[str, ...], n_bootstrap: int,
           window: int) -> None:
    """The evaluation report for a deployment: SOURCE is its catalog (.db) or an exported Parquet log."""
    from bandit.decisions import read_parquet
    from bandit.events import EventLog
    from bandit.offline import evaluate_log
    from bandit.policy import load_policy
    from bandit.report import report_data_from, write_report

    store, named = ctx.obj["store"], {}
    feedback_counts = None  # late clicks and expired feedback: only the event log knows them
    if source.endswith(".parquet"):
        try:
            records = read_parquet(source)
        except Exception as exc:
            raise click.ClickException(f"{source}: not a decision log in Parquet format ({exc})") from None
    else:
        store = source
        events_path = Path(f"{source}.events.db")
        if not events_path.is_file():
            raise click.ClickException(f"{source}: no event log next to it ({events_path}); serve with "
                                       f"`artwork --store {source} serve` first, or pass a Parquet log")
        events = EventLog(events_path)
        records = events.records()
        feedback_counts = events.counts()
        snaps = events.snapshots()  # newest first; paths relative to the default snapshot folder
        latest = Path(f"{source}.snapshots") / snaps[0][0] if snaps else None
        if latest is not None and latest.is_file():
            named["deployed policy (latest snapshot)"] = load_policy(latest)
        events.close()
    rewarded = [r for r in records if r.reward is not None]
    if not rewarded:
        raise click.ClickException(f"{source}: no decision has a reward yet; nothing to evaluate")
    named.update(policy_by_name(p, records) for p in policies)
    named.setdefault("uniform", policy_by_name("uniform", records)[1])
    estimates = evaluate_log(records, named, n_bootstrap=n_bootstrap)
    curves = {}
    if len(rewarded) >= window:
        k = len(rewarded) // window
        rate = np.array([float(r.reward) for r in rewarded[:k * window]]).reshape(k, window).mean(axis=1)
        curves["logged policy"] = LearningCurve("logged policy", np.arange(1, k + 1) * window, rate, rate, window)
    with Catalog(store, create=False) as catalog:
        data = report_data_from(catalog, records, title=f"Artwork selection report: {Path(source).name}",
                                curves=curves, estimates=estimates, feedback_counts=feedback_counts)
    out.print(f"report: {write_report(data, out_dir)}")


@cli.command()
@click.argument("log", type=click.Path(exists=True, dir_okay=False))
@click.argument("out_path", type=click.Path(dir_okay=False))
@click.option("--exploration", default="squarecb", show_default=True,
              type=click.Choice(EXPLORATIONS))
@click.option("--seed", default=0, show_default=True)
@user_errors
def train(log: str, out_path: str, exploration: str, seed: int) -> None:
    """Warm-start a VW policy from a decision log (Parquet) and save it (for replay or serving)."""
    from bandit.decisions import read_parquet
    from bandit.policy import VWConfig, VWPolicy

    try:
        records = read_parquet(log)
    except Exception as exc:
        raise click.ClickException(f"{log}: not a decision log in Parquet format ({exc})") from None
    policy = VWPolicy(VWConfig(exploration=exploration, seed=seed))
    n = policy.learn_many(records)
    if policy.skipped:
        eid, why = policy.skipped[0]
        click.echo(f"skipped {len(policy.skipped)} logged decision(s) that cannot be learned "
                   f"(first: event {eid}: {why})", err=True)
    if n == 0:
        raise click.ClickException(f"{log}: no decision has a reward; nothing to learn from")
    policy.save(out_path)
    out.print(f"learned {n} of {len(records)} decisions -> {out_path} (policy version {policy.version})")


@cli.command("export-log")
@click.argument("out_path", type=click.Path(dir_okay=False))
@click.pass_context
@user_errors
def export_log(ctx: click.Context, out_path: str) -> None:
    """Export the store's decision log (decisions, propensities, rewards) to a Parquet file."""
    from bandit.decisions import write_parquet
    from bandit.events import EventLog

    events_path = Path(f"{ctx.obj['store']}.events.db")
    if not events_path.is_file():
        raise click.ClickException(f"no event log at {events_path}: nothing has been served from this store")
    events = EventLog(events_path)
    try:
        records = events.records()
    finally:
        events.close()
    write_parquet(records, out_path)
    out.print(f"{len(records)} decisions ({sum(r.reward is not None for r in records)} with a reward) -> {out_path}")


def run_subcommand(name: str, argv: list[str], prog_name: str) -> None:
    """Run one subcommand as a standalone script: `--store PATH` may come anywhere in argv."""
    store: list[str] = []
    for i, a in enumerate(argv):  # a group option: it must come before the subcommand
        if a == "--store":
            store, argv = argv[i:i + 2], argv[:i] + argv[i + 2:]
            break
        if a.startswith("--store="):
            store, argv = [a], argv[:i] + argv[i + 1:]
            break
    cli.main([*store, name, *argv], prog_name=prog_name)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
