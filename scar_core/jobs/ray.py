"""The Ray engine: score pairs on a Ray cluster (Ray Data batch inference) with the library's own scoring.

The driver (this process) keeps the pool: it loads and cleans it whole, as the local engine does, and
hands Ray only (row, instruction, response) in blocks. A `map_batches` stage with an actor pool holds
one loaded ranker per actor (one GPU per actor on GPU clusters, one CPU otherwise) and scores each
batch with the in-process engine it is told (scar_core.engine: torch or int8), so scores agree with
that engine run locally, bit for bit for torch at the same precision on the same hardware (a pair's
scores do not depend on the block it is scored in). Results come back keyed by row, in any order;
`RayEngine` is the scar_core.engine.Engine over them (its `score` puts them in input order, the
scoring job commits them chunk by chunk). `open_engine` is where every command and job picks the
engine: in this process or on Ray. Scheduling, retries of a
lost actor's batch and data movement are Ray's; a row that came back twice is counted once and a row
that never came back is an error.

Every node needs SCAR Studio installed and the checkpoint folder at the path the driver names
(`default` is the bundled ranker). Ray is imported only when this engine runs.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from scar_core.device import PRECISIONS
from scar_core.engine import LOCAL_ENGINES, Engine, local_engine
from scar_core.errors import ScarError
from scar_core.ranker import StyleRanker, load_ranker
from scar_core.score import LM_FIELDS, RESULT_FIELDS, Progress, Scores, default_chunk_rows

# What --engine takes: an in-process engine, or Ray running one in its actors ("ray" runs torch; "local"
# is the older name of "auto").
ENGINES = (*LOCAL_ENGINES, "local", "ray", "ray:torch", "ray:int8")
ADDRESS_ENV = "SCAR_RAY_ADDRESS"
PROBE_TIMEOUT_S = 5.0
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
SCAR_ERROR = f"{ScarError.__module__}.{ScarError.__name__}"


@dataclass(frozen=True)
class RayCluster:
    """Where and how wide to score: `address` None starts a local Ray instance; otherwise `auto`,
    HOST:PORT of a running cluster's head, or ray://HOST:10001 (Ray Client). `workers` is the actor pool
    size (default: one per GPU on a GPU cluster, else one per CPU); `block_rows` the rows per block
    and per actor call (default: scar_core.score.default_chunk_rows for the actors' device)."""

    address: str | None = None
    workers: int | None = None
    block_rows: int | None = None

    def params(self) -> dict:
        """The engine as a scoring job's params record it (see `from_params`)."""
        return {"engine": "ray", "address": self.address, "workers": self.workers, "block_rows": self.block_rows}

    @classmethod
    def from_params(cls, params: dict) -> RayCluster:
        return cls(params.get("address"), params.get("workers"), params.get("block_rows"))


def ray_device_precision(device: str, precision: str) -> tuple[str, str]:
    """The device and precision a Ray run records: the device as asked ("ray:auto" takes GPU actors when
    the cluster has GPUs), and the precision by name, with auto meaning fp32 (exact; the machine
    submitting the run cannot tell what the actors' hardware computes natively)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ScarError(f"unknown device '{device}' for the Ray engine; choose auto, cpu or cuda")
    if precision != "auto" and precision not in PRECISIONS:
        raise ScarError(f"unknown precision '{precision}'; choose fp32, bf16, fp16 or auto")
    return f"ray:{device}", "fp32" if precision == "auto" else precision


def split_engine(engine: str) -> tuple[bool, str]:
    """(on Ray, the in-process engine) for an --engine value: "ray" is Ray with torch actors, "local" is "auto"."""
    if engine not in ENGINES:
        raise ScarError(f"unknown engine '{engine}'; choose {', '.join(ENGINES)}")
    if engine.startswith("ray"):
        return True, engine.partition(":")[2] or "torch"
    return False, "auto" if engine == "local" else engine


class RankerActor:
    """A Ray actor holding one loaded ranker in an in-process engine; each call scores a batch of rows."""

    def __init__(self, model: str, encoder: str | None, device: str, precision: str, batch_size: int | None,
                 engine: str = "torch"):
        self.engine = local_engine(load_ranker(model, encoder=encoder), engine, device, precision, batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scores = self.engine.score(batch["instruction"].tolist(), batch["response"].tolist(),
                                   left_truncate=batch["left"].tolist())
        fields = RESULT_FIELDS + (LM_FIELDS if scores.lm_nll is not None else ())
        return {"row": batch["row"], **{name: getattr(scores, name) for name in fields}}


def check_reachable(address: str) -> None:
    """A quick TCP probe of HOST:PORT or ray://HOST:PORT (Ray itself retries an unreachable head for
    minutes); a one-paragraph ScarError naming the address when nothing answers."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ScarError(f"Ray address '{address}' is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise ScarError(unreachable(address, str(e))) from None


def unreachable(address: str, reason: str) -> str:
    """The one paragraph a user sees when the cluster at `address` cannot be joined."""
    return (f"could not reach a Ray cluster at {address} ({reason}). Check that the cluster is running "
            "(`ray status` on its head node) and that this machine can reach the head's port (6379 by default; "
            "ray://HOST:10001 for Ray Client; `auto` for a cluster started on this machine). A cluster "
            "started with Ray 2.60's token authentication also needs RAY_AUTH_MODE=token and its token "
            "(RAY_AUTH_TOKEN, or ~/.ray/auth_token) here. Leave the address out to score on a local Ray instance.")


def connect(address: str | None, cpus: int | None = None) -> None:
    """Join the cluster at `address`, or start a local Ray instance (with `cpus` CPUs) when it is None."""
    import ray

    if address and address != "auto":
        check_reachable(address)
    try:
        ray.init(address=address or "local", num_cpus=None if address else cpus, include_dashboard=False,
                 logging_level="warning", log_to_driver=False)
    except (ConnectionError, RuntimeError, ImportError, ValueError) as e:
        raise ScarError(unreachable(address or "a local instance", f"{type(e).__name__}: {e}")) from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the commands and the app show their own progress
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def iter_ray_scores(model: str, instructions: Sequence[str], responses: Sequence[str], *,
                    cluster: RayCluster, left_truncate: Sequence[bool] | None = None, encoder: str | None = None,
                    device: str = "auto", precision: str = "fp32", batch_size: int | None = None,
                    progress: Progress | None = None, engine: str = "torch") -> Iterator[Scores]:
    """Yield Scores for the batches the actors finish (each with its `index` into the inputs), connecting
    to the cluster first and leaving it when done, failed or closed early (a cancel: the Ray job and its
    actors stop). Every row is yielded exactly once."""
    import ray

    n = len(responses)
    if n == 0:
        return
    connect(cluster.address, cluster.workers)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        if device == "cuda" and not gpus:
            raise ScarError(f"CUDA was requested but the Ray cluster at {cluster.address or 'this machine'} has "
                            "no GPUs; use --device cpu or auto")
        use_gpu = device != "cpu" and gpus > 0 and engine != "int8"
        workers = cluster.workers or (gpus if use_gpu else max(1, int(resources.get("CPU", 1))))
        block = cluster.block_rows or default_chunk_rows("cuda" if use_gpu else "cpu")
        left = list(left_truncate) if left_truncate is not None else [False] * n
        table = pa.table({"row": pa.array(np.arange(n, dtype=np.int64)),
                          "instruction": pa.array(list(instructions), pa.large_string()),
                          "response": pa.array(list(responses), pa.large_string()),
                          "left": pa.array(left, pa.bool_())})
        blocks = ray.data.from_arrow([table.slice(lo, block) for lo in range(0, n, block)])
        scored = blocks.map_batches(
            RankerActor, batch_size=block, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={"model": str(model), "encoder": encoder, "device": "cuda" if use_gpu else "cpu",
                                   "precision": precision, "batch_size": batch_size, "engine": engine},
            num_gpus=1 if use_gpu else 0, num_cpus=0 if use_gpu else 1)
        seen = np.zeros(n, dtype=bool)
        start = time.perf_counter()
        for batch in scored.iter_batches(batch_format="numpy", batch_size=None):
            rows = np.asarray(batch["row"], dtype=np.int64)
            fresh = ~seen[rows]
            seen[rows] = True
            if not fresh.any():
                continue
            fields = {name: np.asarray(batch[name])[fresh] for name in RESULT_FIELDS + LM_FIELDS if name in batch}
            done = int(seen.sum())
            if progress:
                progress(done, n, done / max(time.perf_counter() - start, 1e-9))
            yield Scores(**fields, index=rows[fresh])
        if not seen.all():
            raise ScarError(f"the Ray job returned {int(seen.sum())} of {n} rows; run it again")
    except ray.exceptions.RayError as e:
        raise ScarError(f"the Ray job failed: {failure_reason(e)}") from None
    finally:
        ray.shutdown()


class RayEngine(Engine):
    """An in-process engine ("torch" or "int8") run by Ray actors on a cluster (iter_ray_scores); `ranker`
    is the checkpoint at `model` as the driver loaded it (for its shape; the actors load their own)."""

    def __init__(self, ranker: StyleRanker, model: str, cluster: RayCluster, engine: str = "torch",
                 encoder: str | None = None, device: str = "auto", precision: str = "auto",
                 batch_size: int | None = None):
        super().__init__(ranker)
        if engine not in ("torch", "int8"):
            raise ScarError(f"the Ray engine runs torch or int8 in its actors, not '{engine}'")
        if engine == "int8" and device == "cuda":
            raise ScarError("the int8 engine runs on CPUs; use --engine ray:torch for GPU actors")
        self.name, self.model, self.cluster, self.encoder = engine, str(model), cluster, encoder
        self.device, self.precision = ray_device_precision("cpu" if engine == "int8" else device, precision)
        self.batch_size = batch_size

    def iter_scores(self, instructions, responses, *, left_truncate=None, progress=None) -> Iterator[Scores]:
        return iter_ray_scores(self.model, instructions, responses, cluster=self.cluster, left_truncate=left_truncate,
                               encoder=self.encoder, device=self.device.removeprefix("ray:"),
                               precision=self.precision, batch_size=self.batch_size, progress=progress,
                               engine=self.name)

    def describe(self) -> dict:
        return {**super().describe(), "ray": self.cluster.params()}


def open_engine(ranker: StyleRanker, model: str, engine: str = "auto", *, cluster: RayCluster | None = None,
                encoder: str | None = None, device: str = "auto", precision: str = "auto",
                batch_size: int | None = None, chunk_rows: int | None = None) -> Engine:
    """The engine every command and job scores with: `engine` (an ENGINES value) in this process, or on
    the Ray cluster `cluster` (which "ray..." engines need; a plain "torch"/"int8"/"auto" with a cluster
    runs that engine in the actors, "auto" meaning torch there)."""
    on_ray, local = split_engine(engine)
    if on_ray or cluster is not None:
        return RayEngine(ranker, model, cluster or RayCluster(), "torch" if local == "auto" else local, encoder,
                         device, precision, batch_size)
    return local_engine(ranker, local, device, precision, batch_size, chunk_rows)


def failure_reason(error: BaseException) -> str:
    """One line for a Ray error: the ScarError an actor raised (e.g. a node without the checkpoint),
    else the error's first line without the terminal colours Ray adds."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ScarError):
            return str(cause)
        cause = getattr(cause, "cause", None) or cause.__cause__
    text = ANSI_COLOUR.sub("", str(error))
    raised = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith(f"{SCAR_ERROR}: ")]
    return raised[-1] if raised else next((line.strip() for line in text.splitlines() if line.strip()), text)


def default_address() -> str | None:
    """The cluster the app and the CLI offer by default: $SCAR_RAY_ADDRESS, or None (a local instance)."""
    return os.environ.get(ADDRESS_ENV) or None
