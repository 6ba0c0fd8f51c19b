"""The run directory's rules: one run at a time, nothing overwritten silently, resume only what is compatible.

No Lightning here: the trainer (`medzero_pl/run.py`) calls these before anything is loaded, so every refusal costs
the user seconds, not a model load.

Layout of `<run_dir>/checkpoints/`: `last.ckpt` (the newest save) and `previous.ckpt` (the save before it, kept
so that a damaged `last.ckpt` still leaves something to resume from). Each is a file, or under DeepSpeed a symlink
to a sharded directory `last.ckpt-step<N>` (see `medzero_pl/strategies/deepspeed.py`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import MISSING, fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import torch

from medzero_pl.errors import UserError
from medzero_pl.pickles import check_sharded_checkpoint, load_shard

log = logging.getLogger(__name__)
LAST = "last.ckpt"
PREVIOUS = "previous.ckpt"
BEST = "best.ckpt"
LOCK = ".medzero.lock"

# A shard of a sharded DeepSpeed checkpoint, one (or two: model and optimizer states) per data-parallel rank; the name
# is DeepSpeed's (`DeepSpeedEngine._get_ckpt_name`, `_get_rank_zero_ckpt_name`), `bf16_` only for its BF16 optimizer.
SHARD = re.compile(r"(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_\d+_(?:model|optim)_states\.pt")

# Settings a resumed run may change freely: they alter neither the data stream nor the objective.
HARMLESS_CHANGES = (
    "optim.",
    "grpo.micro_batch_size",
    "model.gradient_checkpointing",
    "model.attn_implementation",  # the same attention by another kernel (absent from checkpoints before it existed)
    "data.val_batch_size",
    "data.val_sources",
)


class RunDirectoryError(UserError):
    """The run directory is in use, already holds a run, cannot be written, or has no usable checkpoint."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def checkpoint_exists(path: str | Path) -> bool:
    """A single-file `.ckpt`, or a sharded DeepSpeed checkpoint directory (it holds a `latest` tag file)."""
    path = Path(path)
    return path.is_file() or (path.is_dir() and (path / "latest").is_file())


def read_checkpoint_header(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict with its tensors memory-mapped (cheap); a damaged file raises `RunDirectoryError`.

    For a sharded DeepSpeed directory this is rank 0's model-states file, which holds Lightning's state; every file
    of the directory is first checked to unpickle nothing but data (`medzero_pl/pickles.py`).
    """
    sharded = Path(path).is_dir()
    if sharded:
        # ZeRO-3 names it zero_pp_rank_0_mp_rank_00_model_states.pt, other stages mp_rank_00_model_states.pt
        found = sorted(Path(path).glob("*/*mp_rank_00_model_states.pt"))
        if not found:
            raise RunDirectoryError(f"{path}: a checkpoint directory without rank 0's model states file")
        check_sharded_checkpoint(path)  # before DeepSpeed, which unpickles every shard with weights_only=False
    try:
        state = load_shard(found[0]) if sharded else torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise RunDirectoryError(f"{path}: no such checkpoint") from None
    except Exception as err:  # truncated zip, garbage, wrong format: torch raises RuntimeError/UnpicklingError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunDirectoryError(f"{path}: not a readable checkpoint ({first})") from None
    if not isinstance(state, dict) or ("state_dict" not in state and not sharded):
        raise RunDirectoryError(f"{path}: not a medzero_pl/Lightning checkpoint (no state_dict)")
    return state


def is_universal(path: str | Path) -> bool:
    """Whether DeepSpeed's `ds_to_universal` converted this sharded checkpoint (it then loads on any number of ranks)."""
    return (Path(path) / "latest_universal").is_file()


def checkpoint_world_size(path: str | Path) -> int | None:
    """How many ranks wrote a sharded DeepSpeed checkpoint directory (None for a single-file or converted one)."""
    path = Path(path)
    if not path.is_dir() or not (path / "latest").is_file() or is_universal(path):
        return None
    shards = path / (path / "latest").read_text().strip()
    ranks = {int(m.group(1)) for f in shards.iterdir() if (m := SHARD.fullmatch(f.name))} if shards.is_dir() else set()
    return len(ranks) or None


def check_resume_world_size(ckpt_path: str | Path, world_size: int) -> None:
    """Refuse to resume a sharded checkpoint on another number of ranks: DeepSpeed partitions the optimizer state by
    rank and would fail only after every model has loaded."""
    saved = checkpoint_world_size(ckpt_path)
    if saved is None or saved == world_size:
        return
    path = Path(ckpt_path)
    tag = path.resolve() / (path / "latest").read_text().strip()
    raise RunDirectoryError(
        f"{ckpt_path} was saved by {saved} ranks but this run has {world_size} (trainer.num_nodes x trainer.devices), "
        f"and a ZeRO checkpoint's shards load only on as many ranks as wrote them: resume on {saved} ranks, or convert "
        f"it once with `python -m deepspeed.checkpoint.ds_to_universal --input_folder {tag} --output_folder "
        f"{tag}_universal` and resume again (a converted checkpoint loads on any number of ranks, with DeepSpeed's "
        "`load_universal`)"
    )


def find_resumable(run_dir: str | Path) -> Path | None:
    """The checkpoint `resume=auto` continues from: `last.ckpt`, or `previous.ckpt` when `last.ckpt` is damaged."""
    folder = checkpoint_dir(run_dir)
    last, previous = folder / LAST, folder / PREVIOUS
    if checkpoint_exists(last):
        try:
            read_checkpoint_header(last)
            return last
        except RunDirectoryError as err:
            if not checkpoint_exists(previous):
                raise RunDirectoryError(f"{err}; no {PREVIOUS} to fall back to") from None
            log.warning("%s; resuming from %s instead (one checkpoint interval earlier)", err, previous)
            read_checkpoint_header(previous)
            return previous
    return previous if checkpoint_exists(previous) else None


def refuse_to_replace(run_dir: str | Path) -> None:
    """A fresh run must not silently replace the checkpoint of an earlier run in the same directory."""
    folder = checkpoint_dir(run_dir)
    existing = [p for p in (folder / LAST, folder / PREVIOUS) if checkpoint_exists(p)]
    if existing:
        raise RunDirectoryError(
            f"{run_dir} already holds a run ({existing[0]}): continue it with resume=auto "
            f"(CLI: --ckpt_path {existing[0]}), choose another run_dir, or replace it with overwrite=true"
        )


def check_writable(run_dir: str | Path) -> None:
    """Create the checkpoint folder and write a probe file, so a save can't be the first thing to fail."""
    folder = checkpoint_dir(run_dir)
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise RunDirectoryError(f"cannot write checkpoints to {folder}: {err.strerror or err}") from None


def resume_differences(
    saved: Mapping[str, Any],
    current: Mapping[str, Any],
    renamed: Mapping[str, str] | None = None,
    schema: type | None = None,
) -> list[str]:
    """Settings that differ between a checkpoint and this run and change the data stream or the objective.

    `renamed` maps keys the checkpoint may hold under an old name to their current name. A setting the checkpoint
    lacks was added to `schema` (the settings dataclass a checkpoint saves, e.g. `Config`) after it was written; its
    default is what the older code did, so it counts as a change only when this run sets it to something else.
    """
    old = {(renamed or {}).get(k, k): v for k, v in _flatten(saved).items()}
    new = _flatten(current)
    defaults = _schema_defaults(schema) if schema is not None else {}
    new = {k: v for k, v in new.items() if k in old or defaults.get(_schema_key(k), _NO_DEFAULT) != v}
    changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
    changed += sorted(k for k in old.keys() ^ new.keys() if not k.startswith(("rewards.", "data.sources.")))
    if any(k.startswith("rewards.") for k in old.keys() ^ new.keys()):
        changed.append("rewards")
    if any(k.startswith("data.sources.") for k in old.keys() ^ new.keys()):
        changed.append("data.sources")
    diffs = []
    for key in dict.fromkeys(changed):
        if key.startswith(HARMLESS_CHANGES):
            continue
        diffs.append(f"{key}: {old.get(key, '<absent>')!r} -> {new.get(key, '<absent>')!r}")
    return diffs


_NO_DEFAULT = object()


@cache
def _schema_defaults(schema: type) -> dict[str, Any]:
    """Flattened defaults of `schema`, the settings dataclass a checkpoint saves; list items under `*`."""
    return _dataclass_defaults(schema)


def _dataclass_defaults(cls: type, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    hints = get_type_hints(cls)
    for f in fields(cls):
        key, kind = f"{prefix}{f.name}", hints[f.name]
        if is_dataclass(kind):
            out.update(_dataclass_defaults(kind, f"{key}."))
            continue
        (element,) = get_args(kind) if get_origin(kind) is list else (None,)
        if is_dataclass(element):
            out.update(_dataclass_defaults(element, f"{key}.*."))
        if f.default is not MISSING:
            out.update(_flatten(f.default, f"{key}."))
        elif f.default_factory is not MISSING:
            out.update(_flatten(f.default_factory(), f"{key}."))
    return out


def _schema_key(key: str) -> str:
    """`data.sources.0.weight` -> `data.sources.*.weight`: list items share their element's defaults."""
    return ".".join("*" if part.isdigit() else part for part in key.split("."))


def check_resume_compatible(
    ckpt_path: str | Path,
    current: Mapping[str, Any],
    allow_changes: bool,
    renamed: Mapping[str, str] | None = None,
    schema: type | None = None,
) -> None:
    """Refuse to resume when the checkpoint was trained with another data stream or objective."""
    header = read_checkpoint_header(ckpt_path)
    saved = {**header.get("hyper_parameters", {}), **header.get("datamodule_hyper_parameters", {})}
    diffs = resume_differences(saved, current, renamed, schema)
    if not diffs:
        return
    listing = "; ".join(diffs)
    if allow_changes:
        log.warning("resuming %s with changed settings (resume_allow_changes=true): %s", ckpt_path, listing)
        return
    raise RunDirectoryError(
        f"{ckpt_path} was trained with other settings that change the data stream or the objective: {listing}. "
        "Resume with the checkpoint's settings, or pass resume_allow_changes=true"
    )


# A scheduler's job id survives a requeue (SLURM keeps SLURM_JOB_ID); the first one set names the job.
JOB_ID_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID")


def scheduler_job_id() -> str | None:
    return next((os.environ[v] for v in JOB_ID_VARIABLES if os.environ.get(v)), None)


class RunLock:
    """`<run_dir>/.medzero.lock` holds the owner's host, pid and scheduler job id; a second run on the same directory
    refuses while the owner lives.

    The owner refreshes the file's modification time every `heartbeat_s` seconds from a daemon thread, so a run
    killed without cleanup (out of memory, node failure, SIGKILL past SLURM's grace period) leaves a lock that goes
    stale. Taken over with a warning: a lock whose heartbeat is older than `stale_s`, one of the same scheduler job
    (a requeue, usually on another node), or one of a process of this host that no longer exists.
    """

    def __init__(self, run_dir: str | Path, heartbeat_s: float = 60.0, stale_s: float = 600.0) -> None:
        self.path = Path(run_dir) / LOCK
        self.held = False
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        if job := scheduler_job_id():
            owner["job"] = job
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(owner, f)
            self.held = True
            self._stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, name="medzero-lock-heartbeat", daemon=True)
            self._beat.start()
            return
        raise RunDirectoryError(f"{self.path}: could not take the run lock")

    def release(self) -> None:
        if self.held:
            self._stop.set()
            if self._beat is not None:
                self._beat.join()
            self.path.unlink(missing_ok=True)
            self.held = False

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:  # deleted by hand or a full disk: the run goes on; a second run may then start
                log.warning("could not refresh the run lock %s", self.path)

    def _take_over_if_stale(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
            host, pid = owner["host"], int(owner["pid"])
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("%s is unreadable; taking it over", self.path)
            self.path.unlink(missing_ok=True)
            return
        here = host == socket.gethostname()
        live_here = here and _alive(pid)
        job = scheduler_job_id()
        if here and not live_here:
            reason = f"run pid {pid} on {host}, which no longer runs"
        elif not live_here and job is not None and owner.get("job") == job:
            reason = f"run pid {pid} on {host} of this scheduler job {job} (requeued)"
        elif not live_here and age > self.stale_s:
            reason = f"run pid {pid} on {host}, whose heartbeat stopped {age:.0f} s ago"
        else:
            where = "this machine" if here else host
            raise RunDirectoryError(
                f"{self.path.parent} is in use by another run (pid {pid} on {where}, since {owner.get('since', '?')}, "
                f"heartbeat {age:.0f} s ago): choose another run_dir, or delete {self.path} if that run is gone"
            )
        log.warning("taking over the lock of %s", reason)
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: list(value) if isinstance(value, tuple) else value}
