"""artwork-engine, decision side: policies, the serving engine, the event log and offline evaluation.

The public names below are imported on first use (PEP 562), so `import bandit` loads nothing
heavy (no torch, fastapi or vowpal wabbit until a name that needs them is used). A notebook:

    import bandit
    records = bandit.read_parquet("log.parquet")            # `artwork export-log log.parquet`
    rows = bandit.select_rows(records, "explore").records   # the uniform exploration pages
    arrays = bandit.records_to_arrays(rows, reward_model=False)
    uniform = arrays.mask / arrays.mask.sum(axis=1, keepdims=True)
    inputs = bandit.build_inputs(uniform, arrays.action, arrays.reward, arrays.pscore)
    print(bandit.IPS().estimate(inputs), bandit.SNIPS().estimate(inputs))
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: name -> the module that defines it.
_EXPORTS = {
    "DecisionRecord": "bandit.decisions",
    "DecisionLogError": "bandit.decisions",
    "new_record": "bandit.decisions",
    "read_parquet": "bandit.decisions",
    "write_parquet": "bandit.decisions",
    "UserContext": "bandit.features",
    "Candidate": "bandit.features",
    "Engine": "bandit.engine",
    "EngineConfig": "bandit.engine",
    "EventLog": "bandit.events",
    "open_event_log": "bandit.events",
    "make_policy": "bandit.registry",
    "load_policy": "bandit.registry",
    "UniformPolicy": "bandit.baselines",
    "FixedPolicy": "bandit.baselines",
    "ThompsonPolicy": "bandit.baselines",
    "BayesPolicy": "bandit.bayes",
    "LogArrays": "bandit.offline",
    "records_to_arrays": "bandit.offline",
    "policy_inputs": "bandit.offline",
    "target_distribution": "bandit.offline",
    "select_rows": "bandit.offline",
    "evaluate_log": "bandit.offline",
    "compare_log": "bandit.offline",
    "compare_online": "bandit.offline",
    "SplitPolicy": "bandit.split",
    "OPEInputs": "bandit.replay",
    "Estimate": "bandit.replay",
    "build_inputs": "bandit.replay",
    "evaluate_policy": "bandit.replay",
    "compare_policies": "bandit.replay",
    "Replay": "bandit.replay",
    "IPS": "bandit.replay",
    "SNIPS": "bandit.replay",
    "DirectMethod": "bandit.replay",
    "DoublyRobust": "bandit.replay",
    "SNDR": "bandit.replay",
    "SwitchDR": "bandit.replay",
    "export_log": "bandit.export",
    "obp_feedback": "bandit.export",
    "dsjson_lines": "bandit.export",
    "report_data_from": "bandit.report",
    "write_report": "bandit.report",
    "Simulator": "bandit.simulator",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from artwork import _version  # one distribution, one version

        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'bandit' has no attribute {name!r}")
    globals()[name] = value  # once: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
