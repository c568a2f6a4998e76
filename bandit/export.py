"""A decision log in other tools' formats: Open Bandit Pipeline arrays (.npz) and Vowpal Wabbit's
decision-service JSON lines (.dsjson).

Both carry the rewarded decisions only (a decision still waiting for feedback has no outcome to
learn or evaluate from), in log order. The conversions (`obp_feedback`, `dsjson_lines`) are pure
functions of the records; `export_log` writes the file (temp file + os.replace, like the Parquet
log, so a reader never sees half of one).

OBP (`obp_feedback`): an action is one artwork, indexed over every artwork the log offered
(``action_ids``, sorted by title then artwork id, so a title's artworks are contiguous). A title's
decision could only pick among its own candidates: ``action_mask`` marks them per row and ``pi_b``
(the logged distribution) is 0 elsewhere, so a target policy's ``action_dist`` must be 0 there too
for IPS to be that of a policy the engine could serve. ``position`` is 0 everywhere (one image per
title, no slate). ``context`` is the user side exactly as the DM/DR reward model encodes it
(`bandit.learning.RewardModel`: taste values, device / day part / country / row-bucket one-hots, a
cold-start flag, a constant; ``context_names`` names the columns); ``action_context`` is each
artwork's tag, face and embedding features (``action_context_names``), from its latest logged
decision. Dense ``(n_rounds, n_actions)`` arrays are OBP's own layout: a log of 1M decisions over
1,000 artworks takes about 9 GB before compression, so export a slice of such a log.

DSJSON (`dsjson_lines`): one line per decision, the features in the namespaces and names of the VW
policy's own examples (`bandit.policy.shared_line` / `action_line`: ``User``, ``Taste``; ``Art``,
``Emb``, ``Id``), actions 1-based in the row's candidate order, ``a`` and ``p`` listing the chosen
action first, ``_label_cost`` = -reward (VW minimises cost).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bandit.decisions import DecisionRecord, write_parquet

__all__ = ["FORMATS", "SUFFIXES", "ExportSummary", "dsjson_lines", "export_log", "infer_format", "obp_feedback"]

FORMATS = ("parquet", "obp", "dsjson")
#: A file name's suffix -> the format it implies (used when no format is named).
SUFFIXES = {".parquet": "parquet", ".npz": "obp", ".json": "dsjson", ".jsonl": "dsjson", ".dsjson": "dsjson"}
#: Bumped when the .npz gains, loses or changes an array (stored as ``format_version``).
OBP_FORMAT_VERSION = 1


def infer_format(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """The export format for `path`: `fmt` if named, else from the suffix, else parquet.

    A named format that contradicts a suffix this module knows (``--format obp`` to ``log.parquet``)
    is a ValueError: one of the two is a slip, and guessing which would write a file its name lies about.
    """
    implied = SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        return implied or "parquet"
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if implied is not None and implied != fmt:
        raise ValueError(f"{path}: the suffix {Path(path).suffix} means --format {implied}, but --format {fmt} was "
                         f"given; name the file for its format ({_example_suffix(fmt)}) or drop --format")
    return fmt


def _example_suffix(fmt: str) -> str:
    return {"parquet": ".parquet", "obp": ".npz", "dsjson": ".dsjson"}[fmt]


def _rewarded(records: Sequence[DecisionRecord]) -> list[DecisionRecord]:
    return [r for r in records if r.reward is not None]


def _check_chosen(r: DecisionRecord) -> int:
    try:
        return r.candidates.index(r.chosen)
    except ValueError:
        raise ValueError(f"logged decision {r.event_id}: chosen artwork {r.chosen!r} is not among its candidates "
                         f"{r.candidates}") from None


# -- Open Bandit Pipeline ------------------------------------------------------------------------------


def obp_feedback(records: Sequence[DecisionRecord]) -> dict[str, np.ndarray]:
    """The rewarded decisions as OBP's ``bandit_feedback`` dict (see the module docstring).

    OBP's keys: n_rounds, n_actions, action, position, reward, pscore, context, action_context,
    pi_b (n, n_actions, 1; left out when a record has no logged distribution). Ours besides:
    action_mask, action_ids, action_title, context_names, action_context_names, event_id, title_id,
    time, format_version.
    """
    from bandit.learning import LogTables, RewardModel

    recs = _rewarded(records)
    if not recs:
        raise ValueError("the log has no decision with a reward yet; nothing to export")
    for r in recs:
        _check_chosen(r)
    title_of: dict[str, str] = {}
    features_of: dict[str, dict[str, float]] = {}
    for r in recs:  # log order, so the last features seen are the latest
        for a, f in zip(r.candidates, r.candidate_features):
            title_of.setdefault(a, r.title_id)
            features_of[a] = f
    ids = sorted(title_of, key=lambda a: (title_of[a], a))
    index = {a: j for j, a in enumerate(ids)}
    n, n_actions = len(recs), len(ids)
    mask = np.zeros((n, n_actions), dtype=bool)
    with_dist = all(r.distribution for r in recs)
    pi_b = np.zeros((n, n_actions, 1)) if with_dist else None
    for i, r in enumerate(recs):
        cols = [index[a] for a in r.candidates]
        mask[i, cols] = True
        if pi_b is not None:
            pi_b[i, cols, 0] = [r.distribution.get(a, 0.0) for a in r.candidates]
    tables = LogTables.from_records(recs)
    model = RewardModel.for_tables(tables)
    out: dict[str, np.ndarray] = {
        "n_rounds": np.array(n),
        "n_actions": np.array(n_actions),
        "action": np.array([index[r.chosen] for r in recs], dtype=np.int64),
        "position": np.zeros(n, dtype=np.int64),
        "reward": np.array([float(r.reward) for r in recs]),  # type: ignore[arg-type]
        "pscore": np.array([float(r.probability) for r in recs]),
        "context": model._users(tables).toarray(),
        "action_context": model._art_vectors([features_of[a] for a in ids]),
        "action_mask": mask,
        "action_ids": np.array(ids, dtype=str),
        "action_title": np.array([title_of[a] for a in ids], dtype=str),
        "context_names": np.array(model.user_feature_names, dtype=str),
        "action_context_names": np.array(model.art_keys, dtype=str),
        "event_id": np.array([r.event_id for r in recs], dtype=str),
        "title_id": np.array([r.title_id for r in recs], dtype=str),
        "time": np.array([float(r.time) for r in recs]),
        "format_version": np.array(OBP_FORMAT_VERSION),
    }
    if pi_b is not None:
        out["pi_b"] = pi_b
    return out


# -- Vowpal Wabbit decision-service JSON -------------------------------------------------------------------


def _timestamp(t: float) -> str:
    # The decision service's form: seven fractional digits and a Z.
    return datetime.fromtimestamp(float(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _shared(context: dict[str, Any]) -> dict[str, Any]:
    """The `shared_line` features as JSON namespaces (same names, so the same hashes)."""
    from bandit.policy import _fname, hour_bucket

    user: dict[str, float] = {}
    if context.get("device") is not None:
        user[f"device={_fname(str(context['device']))}"] = 1.0
    if context.get("hour") is not None:
        user[f"hour={hour_bucket(int(context['hour']))}"] = 1.0
    if context.get("country") is not None:
        user[f"country={_fname(str(context['country']))}"] = 1.0
    if context.get("row") is not None:
        row = int(context["row"])
        user[f"row={row if row < 5 else '5+'}"] = 1.0
    taste = context.get("taste") or {}
    out: dict[str, Any] = {"User": user}
    if taste:
        out["Taste"] = {_fname(k): float(v) for k, v in taste.items() if v != 0.0}
    else:
        user["taste=none"] = 1.0  # as shared_line: cold-start users get their own interaction
    return out


def _action(artwork_id: str, features: dict[str, float]) -> dict[str, Any]:
    """The `action_line` features of one candidate as JSON namespaces."""
    from bandit.features import EMB_PREFIX
    from bandit.policy import _fname

    art = {_fname(k): float(v) for k, v in features.items() if v != 0.0 and not k.startswith(EMB_PREFIX)}
    emb = {_fname(k[len(EMB_PREFIX):]): float(v) for k, v in features.items() if v != 0.0 and k.startswith(EMB_PREFIX)}
    out: dict[str, Any] = {"_tag": artwork_id, "Art": art}
    if emb:
        out["Emb"] = emb
    out["Id"] = {f"a={_fname(artwork_id)}": 1.0}
    return out


def dsjson_lines(records: Sequence[DecisionRecord]) -> Iterator[str]:
    """One decision-service JSON line (no newline) per rewarded decision, in log order.

    Raises ValueError for a decision without its logged distribution (``p`` needs every
    candidate's probability) or whose chosen artwork is not among its candidates.
    """
    for r in _rewarded(records):
        k = _check_chosen(r)
        if not r.distribution:
            raise ValueError(f"logged decision {r.event_id} has no probability distribution (a log from before "
                             "distributions were recorded): DSJSON needs every candidate's probability")
        probs = [float(r.distribution.get(a, 0.0)) for a in r.candidates]
        order = [k] + [j for j in range(len(r.candidates)) if j != k]
        reward = float(r.reward)  # type: ignore[arg-type]
        line = {
            "_label_cost": -reward if reward else 0.0,
            "_label_probability": float(r.probability),
            "_label_Action": k + 1,
            "_labelIndex": k,
            "o": [{"v": reward, "EventId": r.event_id, "ActionTaken": False}],
            "Timestamp": _timestamp(r.time),
            "Version": "1",
            "EventId": r.event_id,
            "a": [j + 1 for j in order],
            "c": {**_shared(r.context),
                  "_multi": [_action(a, f) for a, f in zip(r.candidates, r.candidate_features)]},
            "p": [float(r.probability) if j == k else probs[j] for j in order],
            "VWState": {"m": "N/A"},
        }
        yield json.dumps(line, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


# -- writing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSummary:
    """What `export_log` wrote."""

    path: Path
    format: str
    rows: int  # decisions written
    left_out: int  # decisions without a reward, not in an OBP/DSJSON file (Parquet keeps every one)


def _atomic(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def export_log(records: Sequence[DecisionRecord], path: str | os.PathLike[str],
               fmt: str | None = None) -> ExportSummary:
    """Write `records` to `path` as Parquet (every decision), OBP .npz or DSJSON (rewarded decisions).

    `fmt` None: from the suffix (`infer_format`). Nothing is written when a record cannot be converted.
    """
    fmt = infer_format(path, fmt)
    path = Path(path)
    if fmt == "parquet":
        write_parquet(records, path)
        return ExportSummary(path, fmt, len(records), 0)
    rows = len(_rewarded(records))
    if fmt == "obp":
        arrays = obp_feedback(records)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a bare name
                np.savez_compressed(f, **arrays)
    else:
        lines = list(dsjson_lines(records))  # converted in full first: a bad record writes nothing

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.writelines(line + "\n" for line in lines)
    _atomic(path, write)
    return ExportSummary(path, fmt, rows, len(records) - rows)
