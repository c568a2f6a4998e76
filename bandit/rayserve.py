"""`artwork serve --ray`: chooser replicas on Ray Serve and one learner actor, over one event log.

Why two roles (bandit.engine `EngineConfig.role`): choosing a page is CPU work per request and
scales with processes; learning must apply every learn event exactly once in learn_seq order,
which one process does simply and deterministically. So N Serve replicas each run the ordinary
FastAPI app over an Engine(role="chooser") that logs decisions and feedback to the shared log and
serves a read-only copy of the newest snapshot, and one Ray actor runs an Engine(role="learner")
that tails the log, closes windows and snapshots every couple of seconds. The event log is the
only channel between them: nothing here passes rows or models between processes.

Why an actor with max_restarts for the learner: a killed learner must come back without an
operator, and coming back is just the engine's normal start (newest snapshot + replay of the
log after it), the same path a restarted `artwork serve` takes.

Imported only when `--ray` is given (Ray is heavy); every process must see the same store paths
(one machine, or a shared filesystem) and the same event log (SQLite on one machine,
PostgreSQL across machines).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray import serve

from artwork.paths import StorePaths
from bandit.engine import Engine, EngineConfig
from bandit.events import is_event_log_url
from bandit.server import ServeConfig, create_app
from bandit.storelock import StoreLocked

__all__ = ["LEARNER_SNAPSHOT_S", "APP_NAME", "RayService", "start", "serve_on_ray"]

# The learner's default snapshot interval: a chooser reloads every second, so with 2 s here a
# replica serves a policy at most ~3 s behind the learner (the learner's own lag aside).
LEARNER_SNAPSHOT_S = 2.0
APP_NAME = "artwork"


def _absolute(cfg: ServeConfig) -> ServeConfig:
    """Paths made absolute here: Ray workers do not run in the driver's working directory."""
    e = cfg.engine
    events = e.events if e.events is None or is_event_log_url(e.events) else str(Path(e.events).resolve())
    snaps = None if e.snapshot_dir is None else str(Path(e.snapshot_dir).resolve())
    return dataclasses.replace(cfg, store=str(Path(cfg.store).resolve()),
                               engine=dataclasses.replace(e, events=events, snapshot_dir=snaps))


class Learner:
    """The one learner of the log, as a Ray actor (wrapped by `ray.remote` in `start`)."""

    def __init__(self, store: str, cfg: EngineConfig, lock_wait_s: float = 60.0) -> None:
        # A restarted actor may find the dead one's lock not yet released (PostgreSQL notices a
        # dropped session after a moment): wait for it rather than fail the restart.
        deadline = time.monotonic() + lock_wait_s
        while True:
            eng = Engine(store, cfg)
            try:
                self.engine = eng.start()
                return
            except StoreLocked:
                eng.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def pid(self) -> int:
        return os.getpid()

    def status(self) -> dict[str, Any]:
        e = self.engine
        return {**e.replica_status(), "learned_seq": e.learned_seq, "policy_version": e.policy.version,
                "replayed": e.counters["replayed"], "tail_learned": e.counters["tail_learned"]}

    def learn_now(self) -> dict[str, Any]:
        """One timer tick at once (tests, benchmarks): close due windows, learn the tail."""
        self.engine.tick()
        return self.status()

    def save_policy(self, path: str) -> int:
        """The policy as it is now, written to `path`; returns the learned_seq it holds."""
        with self.engine._learn_lock:
            self.engine.policy.save(path)
            return self.engine.learned_seq

    def close(self) -> None:
        self.engine.close()  # the final snapshot, then the store lock goes


#: With --max-replicas, Serve adds a replica when the replicas average more requests in flight than
#: this (a 40-title page is ~8 ms of CPU: 8 in flight is a replica's core busy for ~60 ms of queue).
TARGET_ONGOING_REQUESTS = 8


def _chooser_app(cfg: ServeConfig, replicas: int, cpus: float, max_replicas: int | None = None) -> Any:
    # The FastAPI app is built inside each replica (a builder, not an app object): every replica
    # gets its own Engine from the app's lifespan, closed when Serve stops the replica.
    size: dict[str, Any] = ({"num_replicas": replicas} if max_replicas is None else
                            {"autoscaling_config": {"min_replicas": replicas, "max_replicas": max_replicas,
                                                    "target_ongoing_requests": TARGET_ONGOING_REQUESTS}})
    # A page request takes milliseconds: 5 s of grace for in-flight requests, not Serve's 20, so
    # Ctrl-C (and a scale-down) does not wait on replicas that have nothing left to finish.
    @serve.deployment(name="chooser", ray_actor_options={"num_cpus": cpus},
                      max_ongoing_requests=32, health_check_period_s=2.0,
                      graceful_shutdown_timeout_s=5.0, graceful_shutdown_wait_loop_s=0.5, **size)
    @serve.ingress(lambda: create_app(cfg))
    class Chooser:
        def replica_pid(self) -> int:
            return os.getpid()

    return Chooser.bind()


@dataclasses.dataclass
class RayService:
    """What `start` started: the learner actor and the Serve application."""

    learner: Any  # ActorHandle of Learner
    url: str
    replicas: int  # at start (the minimum, when autoscaling)
    started_ray: bool
    max_replicas: int | None = None  # autoscaling up to this many; None: a fixed count

    def replica_pids(self, tries: int = 200) -> set[int]:
        """The chooser replicas' pids (asked through the deployment handle until all have answered)."""
        handle = serve.get_deployment_handle("chooser", app_name=APP_NAME)
        pids: set[int] = set()
        for _ in range(tries):
            pids.add(handle.replica_pid.remote().result(timeout_s=30))
            if len(pids) >= self.replicas:
                break
        return pids

    def stop(self) -> None:
        """The replicas, then the learner (its final snapshot), then Ray if this process started it.

        Serve goes down too: its HTTP proxy listens where `start` told it to, and a later `start`
        on another host/port would otherwise find the old proxy and keep its address.
        """
        try:
            serve.shutdown()
        finally:
            try:
                ray.get(self.learner.close.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - a dead learner has nothing to snapshot
                pass
            ray.kill(self.learner, no_restart=True)
            if self.started_ray:
                ray.shutdown()


def start(cfg: ServeConfig, *, replicas: int = 2, address: str | None = None, reload_interval_s: float = 1.0,
          learner_snapshot_s: float = LEARNER_SNAPSHOT_S, max_replicas: int | None = None) -> RayService:
    """Start (or join) Ray, the learner actor, then `replicas` chooser replicas on cfg.host:cfg.port
    (with `max_replicas`, Serve autoscales between the two on requests in flight).

    The learner starts first and snapshots what it restored, so the replicas begin from the
    current policy rather than a blank one.
    """
    from bandit.distributed import connect

    started_ray = connect(address)  # RayError (one line) for a missing Ray or a silent address
    cfg = _absolute(cfg)
    # Ask for a CPU per process when the cluster has them, else share what there is, so that the
    # replicas and the learner always fit (a 2-core laptop, the tests).
    total = float(ray.cluster_resources().get("CPU", 1.0))
    cpus = min(1.0, total / ((max_replicas or replicas) + 1))
    learner_cfg = dataclasses.replace(cfg.engine, role="learner", snapshot_interval_s=learner_snapshot_s)
    learner = ray.remote(Learner).options(num_cpus=cpus, max_restarts=-1, max_task_retries=3).remote(
        cfg.store, learner_cfg)
    ray.get(learner.pid.remote())  # started: restored, caught up, snapshotted (or its error raised here)
    chooser_cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, role="chooser",
                                                                      reload_interval_s=reload_interval_s))
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(_chooser_app(chooser_cfg, replicas, cpus, max_replicas), name=APP_NAME, route_prefix="/")
    return RayService(learner, f"http://{cfg.host}:{cfg.port}", replicas, started_ray, max_replicas)


def serve_on_ray(cfg: ServeConfig, **kw: Any) -> None:
    """`artwork serve --ray`: start, say where, wait for Ctrl-C, stop."""
    import click

    svc = start(cfg, **kw)
    count = (f"{svc.replicas}" if svc.max_replicas is None else
             f"{svc.replicas}-{svc.max_replicas} (autoscaling on requests in flight)")
    click.echo(f"serving {cfg.store} on {svc.url} (docs at /docs): {count} chooser replicas on Ray Serve, "
               f"one learner actor; event log {StorePaths.of(cfg.store, cfg.engine.events).events}; Ctrl-C stops",
               err=True)
    # Ctrl-C and SIGTERM (docker stop, Kubernetes) both stop it cleanly: handlers of our own that
    # set a flag, rather than Python's KeyboardInterrupt, which covers SIGINT only and not a process
    # started with SIGINT ignored (a `nohup ... &` from a script).
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
        click.echo("stopping: replicas, then the learner (final snapshot)", err=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        svc.stop()
