"""tf.distribute helpers: choosing a strategy, and the cross-replica gather of negatives.

InfoNCE and NWJ score each positive against the negatives of the WHOLE global batch, so each
replica needs the representations of all replicas. ``ReplicaContext.all_gather`` fails under
MultiWorkerMirroredStrategy on this stack ("destinations can not be empty", TF 2.21, two
local CPU workers); ``cross_replica_concat`` builds
the concatenation from a scatter into a zero tensor plus an all-reduce SUM (the pattern of
SimCLR's TF2 code), which is differentiable: the gradient of an all-reduce is the all-reduce of
the gradients.
"""

import json
import logging
import os

import tensorflow as tf

_LOG = logging.getLogger(__name__)

STRATEGIES = ('default', 'mirrored', 'multi_worker', 'tpu')


def make_strategy(distribution='default', tpu=None):
  """Returns the tf.distribute strategy for a run.

  Args:
    distribution: 'default' (one device), 'mirrored' (all local GPUs, or all logical CPU
      devices when there is no GPU), 'multi_worker' (MultiWorkerMirroredStrategy from the
      TF_CONFIG environment variable) or 'tpu'.
    tpu: Cloud TPU name or address (grpc://...), used with 'tpu' (and implies it).
  """
  if tpu:
    distribution = 'tpu'
  if distribution not in STRATEGIES:
    raise ValueError(f'Unknown distribution {distribution!r}; choose one of {STRATEGIES}.')
  if distribution == 'default':
    return tf.distribute.get_strategy()
  if distribution == 'mirrored':
    gpus = tf.config.list_logical_devices('GPU')
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices('CPU')]
    return tf.distribute.MirroredStrategy(devices)
  if distribution == 'multi_worker':
    if 'TF_CONFIG' not in os.environ:
      raise ValueError('distribution=multi_worker needs the TF_CONFIG environment variable '
                       '(cluster and task of this worker); see README.md.')
    return tf.distribute.MultiWorkerMirroredStrategy()
  resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or '')
  tf.config.experimental_connect_to_cluster(resolver)
  tf.tpu.experimental.initialize_tpu_system(resolver)
  _LOG.info('TPU devices: %s', tf.config.list_logical_devices('TPU'))
  return tf.distribute.TPUStrategy(resolver)


def task_info(strategy):
  """(task_type, task_id) of this process; ('chief', 0) outside multi-worker training."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None:
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type is None:
      return 'chief', 0
    return task_type, task_id
  if 'TF_CONFIG' in os.environ and isinstance(strategy,
                                              tf.distribute.MultiWorkerMirroredStrategy):
    task = json.loads(os.environ['TF_CONFIG']).get('task', {})
    return task.get('type', 'chief'), task.get('index', 0)
  return 'chief', 0


def is_chief(strategy):
  """Whether this process writes summaries, checkpoints, metrics and the export."""
  task_type, task_id = task_info(strategy)
  return task_type == 'chief' or (task_type == 'worker' and task_id == 0 and not _has_chief())


def _has_chief():
  if 'TF_CONFIG' not in os.environ:
    return False
  return 'chief' in json.loads(os.environ['TF_CONFIG']).get('cluster', {})


def cross_replica_concat(tensor):
  """Concatenates ``tensor`` [b, ...] of every replica along axis 0 -> [R * b, ...].

  Call in replica context. Replica r's block lands at rows [r * b, (r + 1) * b). With one
  replica it returns ``tensor`` itself.
  """
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return tensor
  num = ctx.num_replicas_in_sync
  index = ctx.replica_id_in_sync_group
  ext = tf.scatter_nd(indices=[[index]], updates=[tensor],
                      shape=tf.concat([[num], tf.shape(tensor)], axis=0))
  ext = ctx.all_reduce(tf.distribute.ReduceOp.SUM, ext)
  return tf.reshape(ext, tf.concat([[-1], tf.shape(tensor)[1:]], axis=0))


def replica_row_offset(local_batch):
  """Row (and positive-column) offset of this replica's block in the global batch."""
  ctx = tf.distribute.get_replica_context()
  if ctx is None:
    return tf.constant(0, tf.int32)
  return tf.cast(ctx.replica_id_in_sync_group, tf.int32) * tf.cast(local_batch, tf.int32)


def all_reduce_sum(value):
  """Sum of ``value`` over replicas (identity with one replica); differentiable."""
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return value
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def num_replicas():
  ctx = tf.distribute.get_replica_context()
  return 1 if ctx is None else ctx.num_replicas_in_sync
