"""Which ``tf.distribute`` strategy a run trains under, and what each process of it does.

``--strategy``:

- ``one-device``: TensorFlow's default strategy (one CPU or GPU), the single-process run;
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over this machine's GPUs, one replica each;
- ``multi-worker``: ``tf.distribute.MultiWorkerMirroredStrategy``, one process per host (or per
  local worker), the cluster and this process's place in it read from the ``TF_CONFIG``
  environment variable (see ``docs/distributed.md``);
- ``tpu``: ``tf.distribute.TPUStrategy`` on the TPU that ``TPUClusterResolver`` finds;
- ``auto``: ``multi-worker`` when ``TF_CONFIG`` names a cluster of more than one task,
  ``mirrored`` with more than one GPU, else ``one-device``.

``--batch-size`` is the global batch: each of the ``replicas`` computes on
``batch_size / replicas`` rows of it and the gradients are summed across replicas. Every worker
reads the whole data set in the same (seeded) order and keeps its share of each batch
(``AutoShardPolicy.DATA``). Only the chief (``TF_CONFIG`` task ``chief``, or ``worker`` 0 in a
cluster without one) writes the run folder; the others read its backup when they restart.

>>> context = make_distribution("one-device")
>>> context.name, context.replicas, context.is_chief
('one-device', 1, True)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from tfsft.choices import STRATEGIES
from tfsft.errors import ConfigError

#: How long a worker waits for the others to start before it stops with an error (seconds);
#: the ``TFSFT_PEER_TIMEOUT`` environment variable changes it.
PEER_TIMEOUT_S = 600.0


@dataclass
class Distribution:
    """A strategy and this process's role in it."""

    name: str
    strategy: Any  # tf.distribute.Strategy
    workers: int = 1
    worker_index: int = 0
    is_chief: bool = True

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def distributed(self) -> bool:
        """Whether training runs under a strategy other than TensorFlow's default one."""
        return self.name != "one-device"

    def per_replica_batch(self, global_batch: int) -> int:
        """Rows each replica computes on per step; refuses a batch the replicas cannot share."""
        if global_batch % self.replicas:
            raise ConfigError(
                f"--batch-size {global_batch} is the global batch and must divide evenly among "
                f"the {self.replicas} replicas of --strategy {self.name}; use a multiple of "
                f"{self.replicas}")
        return global_batch // self.replicas

    def describe(self, global_batch: int) -> dict[str, Any]:
        """The ``distribution`` record of ``run.json``."""
        return {"strategy": self.name, "workers": self.workers, "worker_index": self.worker_index,
                "replicas": self.replicas, "global_batch_size": global_batch,
                "per_replica_batch_size": self.per_replica_batch(global_batch)}


def cluster_spec(environ: dict[str, str] | None = None) -> tuple[dict, dict]:
    """The ``cluster`` and ``task`` of ``TF_CONFIG`` (empty when it is unset).

    >>> cluster_spec({"TF_CONFIG": '{"cluster": {"worker": ["h1:2222", "h2:2222"]},'
    ...               ' "task": {"type": "worker", "index": 1}}'})
    ({'worker': ['h1:2222', 'h2:2222']}, {'type': 'worker', 'index': 1})
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return {}, {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the TF_CONFIG environment variable is not valid JSON ({exc}); see "
                          "docs/distributed.md for its layout") from None
    layout = ("TF_CONFIG must be {\"cluster\": {...}, \"task\": {\"type\": ..., \"index\": "
              "...}}; see docs/distributed.md")
    if not isinstance(config, dict):
        kinds = {list: "a list", str: "a string", bool: "true or false", type(None): "null"}
        raise ConfigError(f"{layout}; it holds {kinds.get(type(config), 'a number')}")
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError(layout)
    index = task.get("index", 0) if task else 0
    if task and (not isinstance(index, int) or isinstance(index, bool)):
        quoted = (" written as a JSON string: write it without quotes, e.g. \"index\": 0"
                  if isinstance(index, str) else "")
        raise ConfigError(f"TF_CONFIG's task index is {index!r}{quoted}; it must be a whole "
                          "number (this process's place in its list of the cluster)")
    return cluster, task


def is_chief_task(cluster: dict, task: dict) -> bool:
    """The chief writes the run folder: task ``chief``, or ``worker`` 0 when there is none.

    >>> is_chief_task({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0})
    True
    >>> is_chief_task({"chief": ["a:1"], "worker": ["b:1"]}, {"type": "worker", "index": 0})
    False
    """
    if not task:
        return True
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in cluster


def check_cluster(cluster: dict, task: dict) -> None:
    """Refuse a ``TF_CONFIG`` that names a cluster tfsft cannot train in, whichever strategy
    runs (a one-worker cluster included: its mistakes would surface once it grows).

    >>> check_cluster({"worker": ["h1:2222"]}, {"type": "worker", "index": 0})
    >>> check_cluster({"worker": ["h1:2222"]}, {"type": "worker", "index": 5})
    Traceback (most recent call last):
    ...
    tfsft.errors.ConfigError: TF_CONFIG's task {'type': 'worker', 'index': 5} is not in its \
cluster {'worker': ['h1:2222']}: its index counts from 0 within its type
    """
    if not cluster and not task:
        return
    if cluster and not task:
        raise ConfigError("TF_CONFIG names a cluster but not this process's task: add "
                          "\"task\": {\"type\": \"worker\", \"index\": N}; see "
                          "docs/distributed.md")
    if task and not cluster:
        raise ConfigError("TF_CONFIG names this process's task but no cluster: add "
                          "\"cluster\": {\"worker\": [\"HOST:PORT\", ...]}; see "
                          "docs/distributed.md")
    if task.get("type") not in ("chief", "worker"):
        raise ConfigError(f"TF_CONFIG's task type is {task.get('type')!r}; tfsft trains with "
                          "workers (and an optional chief), not parameter servers or "
                          "evaluators: use \"worker\" or \"chief\"")
    if task.get("type") not in cluster or int(task.get("index", 0)) >= len(cluster[task["type"]]):
        raise ConfigError(f"TF_CONFIG's task {task} is not in its cluster {cluster}: its index "
                          "counts from 0 within its type")
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list):
            raise ConfigError(f"TF_CONFIG's cluster {kind!r} must be a list of HOST:PORT "
                              f"addresses, not {addresses!r}")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or any(c.isspace() for c in host):
                raise ConfigError(f"TF_CONFIG's cluster {kind!r} holds {address!r}, which is "
                                  "not a HOST:PORT address (such as \"10.0.0.2:2222\")")
            if sum(str(a).strip() == str(address).strip() for k in cluster.values()
                   for a in (k if isinstance(k, list) else [])) > 1:
                raise ConfigError(f"TF_CONFIG's cluster names {address!r} more than once; give "
                                  "each task its own HOST:PORT")
            if not 1 <= int(port) <= 65535:
                raise ConfigError(f"TF_CONFIG's cluster {kind!r} holds {address!r}, whose port "
                                  f"{int(port)} is outside 1-65535")


def make_distribution(name: str) -> Distribution:
    """The strategy for ``--strategy name``. Create it before any other TensorFlow work in the
    process: ``MultiWorkerMirroredStrategy`` must configure the collective ops first."""
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    import tensorflow as tf

    cluster, task = cluster_spec()
    check_cluster(cluster, task)
    tasks = sum(len(addresses) for addresses in cluster.values())
    if name == "auto":
        if tasks > 1:
            name = "multi-worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "one-device"
    elif name in ("one-device", "mirrored") and tasks > 1:
        raise ConfigError(f"TF_CONFIG names a cluster of {tasks} tasks, but --strategy {name} "
                          "trains in this process alone: each worker would train the whole "
                          "model by itself and write the same run folder. Use --strategy "
                          "multi-worker (or auto), or unset TF_CONFIG for a one-process run")
    if name == "one-device":
        return Distribution(name, tf.distribute.get_strategy())
    if name == "mirrored":
        return Distribution(name, tf.distribute.MirroredStrategy())
    if name == "tpu":
        return Distribution(name, _tpu_strategy())
    if not task or tasks < 1:
        raise ConfigError(
            "--strategy multi-worker needs the TF_CONFIG environment variable (the cluster's "
            "addresses and this process's task); see docs/distributed.md, or start local "
            "workers with python -m tfsft.training.local_cluster")
    _patch_keras_for_multi_worker()
    from tfsft.training.peer_watch import joined, watch_peers

    watcher = watch_peers(peer_addresses(cluster, task), peer_timeout())
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    joined(watcher)
    workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    index = int(task.get("index", 0)) + (1 if task.get("type") == "worker" and "chief" in cluster
                                         else 0)
    return Distribution("multi-worker", strategy, workers=workers, worker_index=index,
                        is_chief=is_chief_task(cluster, task))


def peer_timeout(environ: dict[str, str] | None = None) -> float:
    """Seconds to wait for the other workers: ``TFSFT_PEER_TIMEOUT``, else :data:`PEER_TIMEOUT_S`.

    >>> peer_timeout({"TFSFT_PEER_TIMEOUT": "30"}), peer_timeout({})
    (30.0, 600.0)
    """
    raw = (os.environ if environ is None else environ).get("TFSFT_PEER_TIMEOUT", "").strip()
    if not raw:
        return PEER_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"TFSFT_PEER_TIMEOUT must be a number of seconds above 0, got {raw!r}")
    return value


def peer_addresses(cluster: dict[str, Any], task: dict[str, Any]) -> list[str]:
    """The ``HOST:PORT`` of every task in the cluster but this process's own.

    >>> peer_addresses({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1})
    ['a:1']
    """
    own = (task.get("type"), int(task.get("index", 0)))
    return [address for kind, addresses in cluster.items() for i, address in enumerate(addresses)
            if (kind, i) != own]


def _tpu_strategy():
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as exc:
        raise ConfigError(f"--strategy tpu found no TPU ({str(exc).splitlines()[0]}); run on a "
                          "TPU host, or choose --strategy auto") from None
    return tf.distribute.TPUStrategy(resolver)


def shard_by_data(dataset):
    """``dataset`` with ``AutoShardPolicy.DATA``: every worker reads all of it, in the same seeded
    order, and keeps its part of each global batch."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def barrier(distribution: Distribution) -> None:
    """Wait until every worker gets here (an all-reduce of one number); a no-op in one process."""
    if distribution.name != "multi-worker":
        return
    import tensorflow as tf

    @tf.function
    def step():
        return distribution.strategy.run(
            lambda: tf.distribute.get_replica_context().all_reduce("SUM", tf.constant(1.0)))

    step()


def prepare_model(distribution: Distribution, model, dataset) -> None:
    """Build ``model``'s weights, compiled metrics and loss in the strategy's scope from the
    shapes of ``dataset``'s batches, so that ``fit`` does not build them itself (reading no
    batch: a second iterator over a reshuffling dataset would change the data order).

    Keras 3.15's ``fit`` builds an unbuilt model from the mean over workers of its first
    batch, an eager cross-worker reduction that ``MultiWorkerMirroredStrategy`` cannot run
    (keras-team/keras#20585); a model built beforehand skips it.
    """
    if distribution.name != "multi-worker":
        return
    with distribution.strategy.scope():
        model._symbolic_build(data_batch=dataset.element_spec)
    model._maybe_symbolic_build = _built_already


def _built_already(iterator=None, data_batch=None) -> None:
    """Stands in for ``Model._maybe_symbolic_build`` once :func:`prepare_model` has built."""


_PATCHED = False


def _patch_keras_for_multi_worker() -> None:
    """Keras 3.15 averages each logged metric over workers with ``reduce(..., axis=0)``, which
    fails for the scalars metrics are ("Invalid reduction dimension 0 for input with 0
    dimensions"); average them whole instead (keras-team/keras#20585)."""
    global _PATCHED
    if _PATCHED:
        return
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if (trainer._collective_all_reduce_multi_worker(strategy)
                and reduction in ("auto", "mean")):
            # each worker's own value (one local replica) or per-replica values alike
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None),
                                         values)
        return original(values, strategy, reduction)

    trainer.reduce_per_replica = reduce_per_replica
    _PATCHED = True
