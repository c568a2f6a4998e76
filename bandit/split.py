"""An online A/B test as one policy: each user is served, and learned from, by one of two arms.

`SplitPolicy(a, b, share_b)` sends a user to arm B when a sha256 of (salt, user_id) falls below
`share_b`, to arm A otherwise: stable across pages, restarts and processes (Python's `hash` is
salted per process, so it is not used). Everything a policy does for a user goes to that user's
arm: choosing a page (all titles of a page are one user, so one arm), distributions, and learning
(`learn_one` / `relearn` get the user's context, explore-slice decisions included). Each arm is
therefore an independent deployment on its share of the users, and the log's per-decision policy
name says which arm served it: the arms are renamed "A:<name>" and "B:<name>", distinct even when
both are the same kind.

The engine needs nothing special: a split is served, learned, snapshotted and restored like any
other policy. Saved as a zip of the two arms' own files plus meta.json, so each arm round-trips
exactly as its own kind does.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from bandit.features import Candidate, UserContext
from bandit.pending import Pending
from bandit.policy import BasePolicy, Decision, PolicyError, TitleRequest, atomic_write_bytes

__all__ = ["SplitPolicy", "arm_of", "ARM_PREFIXES", "DEFAULT_SALT"]

_FORMAT = 1
ARM_PREFIXES = ("A:", "B:")
DEFAULT_SALT = "artwork-ab"


def arm_of(user_id: str, share_b: float, salt: str = DEFAULT_SALT) -> int:
    """0 (arm A) or 1 (arm B) for a user: the first 8 bytes of sha256(salt NUL user_id) as a
    fraction of 2**64, compared with share_b."""
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode("utf-8", "surrogatepass")).digest()
    return int(int.from_bytes(digest[:8], "big") < share_b * 2.0 ** 64)


def _base_name(name: str) -> str:
    for p in ARM_PREFIXES:
        if name.startswith(p):
            return name[len(p):]
    return name


class SplitPolicy(BasePolicy):
    """Two policies, each serving and learning from its own users (see the module doc)."""

    kind: ClassVar[str] = "split"
    by_name: ClassVar[bool] = False  # built from two arms (`serve --ab`), loadable from its file
    servable: ClassVar[bool] = False
    file_suffix: ClassVar[str] = "split"

    def __init__(self, a: BasePolicy, b: BasePolicy, share_b: float = 0.5, *, salt: str = DEFAULT_SALT,
                 seed: int = 0) -> None:
        if isinstance(a, SplitPolicy) or isinstance(b, SplitPolicy):
            raise PolicyError("an arm of an A/B split cannot itself be a split")
        if isinstance(share_b, bool) or not isinstance(share_b, (int, float)) or not 0.0 < float(share_b) < 1.0:
            raise PolicyError(f"share_b (the share of users on arm B) must be in (0, 1), got {share_b!r}")
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)  # unused: each arm samples with its own generator
        self.arms = (a, b)
        a.name = ARM_PREFIXES[0] + _base_name(a.name)
        b.name = ARM_PREFIXES[1] + _base_name(b.name)
        self.share_b = float(share_b)
        self.salt = str(salt)

    @property
    def a(self) -> BasePolicy:
        return self.arms[0]

    @property
    def b(self) -> BasePolicy:
        return self.arms[1]

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"split({self.a.name} | {self.b.name}, share_b={self.share_b:g})"

    @property
    def version(self) -> int:  # type: ignore[override]
        """Updates learned by both arms together (each arm keeps its own count)."""
        return int(self.a.version) + int(self.b.version)

    def attach_pending(self, pending: Pending | None) -> None:
        """The arms choose without open decisions in view: one process's count holds both arms'
        users, while each arm's counts hold only its own, so sharing it would bias each arm."""
        for arm in self.arms:  # an arm served alone before the split (restore) had the count attached
            arm.attach_pending(None)

    def arm_for(self, user: UserContext | str) -> BasePolicy:
        """The arm that serves and learns from this user."""
        uid = user if isinstance(user, str) else user.user_id
        return self.arms[arm_of(uid, self.share_b, self.salt)]

    # -- serving: the whole page goes to the user's arm ------------------------------------------
    def distributions(self, user: UserContext, requests: Sequence[TitleRequest],
                      exclude: Collection[str] = ()) -> list[dict[str, float] | PolicyError]:
        return self.arm_for(user).distributions(user, requests, exclude)

    def choose_many(self, user: UserContext, requests: Sequence[TitleRequest],
                    exclude: Collection[str] = ()) -> list[Decision | PolicyError]:
        return self.arm_for(user).choose_many(user, requests, exclude)

    def reseed(self, *entropy: int) -> None:
        for i, arm in enumerate(self.arms):  # each arm samples with its own generator
            arm.reseed(*entropy, i)

    def _distribution(self, user: UserContext, title_id: str, allowed: list[Candidate]) -> list[float]:
        return self.arm_for(user)._distribution(user, title_id, allowed)

    # -- learning: an outcome goes to the arm of the user it belongs to ---------------------------
    def learn_one(self, user: UserContext, title_id: str, candidates: list[Candidate], chosen: str,
                  probability: float, reward: float) -> None:
        self.arm_for(user).learn_one(user, title_id, candidates, chosen, probability, reward)

    def relearn(self, user: UserContext, title_id: str, candidates: list[Candidate], chosen: str,
                probability: float, old_reward: float, new_reward: float) -> None:
        self.arm_for(user).relearn(user, title_id, candidates, chosen, probability, old_reward, new_reward)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Zip of meta.json and each arm's own saved file (a.<suffix>, b.<suffix>), written atomically."""
        members = {}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".split-", dir=Path(path).parent) as tmp:
            for label, arm in zip("ab", self.arms):
                member = f"{label}.{arm.file_suffix}"
                arm.save(Path(tmp) / member)
                members[member] = (Path(tmp) / member).read_bytes()
        meta = {"format": _FORMAT, "kind": self.kind, "share_b": self.share_b, "salt": self.salt, "seed": self.seed,
                "arms": list(members), "names": [arm.name for arm in self.arms],
                "versions": [arm.version for arm in self.arms]}
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr("meta.json", json.dumps(meta, sort_keys=True))
            for member, data in members.items():
                z.writestr(member, data)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SplitPolicy:
        """Inverse of `save`: both arms exactly as their own kinds load them."""
        from bandit.registry import load_policy  # local: the registry imports this module

        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read("meta.json"))
                if meta.get("kind") != cls.kind or meta.get("format") != _FORMAT:
                    raise PolicyError(f"{path}: expected kind 'split' format {_FORMAT}, got {meta.get('kind')!r} "
                                      f"{meta.get('format')!r}")
                members = meta.get("arms")
                if not (isinstance(members, list) and len(members) == 2 and all(isinstance(m, str) for m in members)):
                    raise PolicyError(f"{path}: meta.json must name the two arm files, got {members!r}")
                blobs = [z.read(m) for m in members]
        except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError, AttributeError) as e:
            raise PolicyError(f"{path}: not a SplitPolicy file ({e})") from e
        with tempfile.TemporaryDirectory(prefix=".split-") as tmp:
            arms = []
            for member, data in zip(members, blobs):
                p = Path(tmp) / Path(member).name
                p.write_bytes(data)
                arms.append(load_policy(p))
        try:
            return cls(arms[0], arms[1], meta["share_b"], salt=meta.get("salt", DEFAULT_SALT), seed=meta.get("seed", 0))
        except (KeyError, TypeError, ValueError) as e:  # a damaged meta.json: an unusable file, not a crash
            raise PolicyError(f"{path}: not a usable SplitPolicy file ({type(e).__name__}: {e})") from e

    def __repr__(self) -> str:
        return f"SplitPolicy(a={self.a!r}, b={self.b!r}, share_b={self.share_b})"
