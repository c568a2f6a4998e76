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


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
