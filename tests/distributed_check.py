"""Subprocess helper for tests/test_distributed.py (logical devices must be set up before TF
starts, so this runs in its own process). Prints one JSON line with its measurements.

  python tests/distributed_check.py equivalence   # 2 CPU replicas vs 1 device
"""

import json
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import gin  # noqa: E402
import numpy as np  # noqa: E402

from mi_tf import launch  # noqa: E402,F401  (registers every configurable)
from mi_tf import critics  # noqa: E402
from mi_tf import distribute  # noqa: E402
from mi_tf import data  # noqa: E402
from mi_tf.tasks import mi_maximization  # noqa: E402
from mi_tf import train_lib  # noqa: E402

GLOBAL_BATCH = 32


def loss_and_grads(strategy, estimator, critic):
  """Global loss and summed gradient of one global batch under ``strategy``."""
  tf.keras.utils.set_random_seed(0)
  task = mi_maximization.MIMaximization(estimator=estimator, critic=critic,
                              data=data.ImageHalves(train_split='train[:512]'))
  with strategy.scope():
    task.build(GLOBAL_BATCH, seed=0)
  ds = strategy.distribute_datasets_from_function(task.dataset_fn(GLOBAL_BATCH, 0, 0))
  batch = next(iter(ds))

  def replica(b):
    with tf.GradientTape() as tape:
      replica_loss, i_est = task.loss(b)
    grads = distribute.all_reduce_sum(tape.gradient(replica_loss, task.variables))
    return replica_loss * distribute.num_replicas(), grads

  @tf.function
  def run(b):
    loss, grads = strategy.run(replica, args=(b,))
    first = lambda v: strategy.experimental_local_results(v)[0]  # noqa: E731
    return first(loss), [first(g) for g in grads]

  loss, grads = run(batch)
  return float(loss), [g.numpy() for g in grads]


def equivalence():
  mirrored = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  out = {'replicas': mirrored.num_replicas_in_sync}
  for estimator in ('infonce', 'nwj'):
    for critic in (critics.Bilinear, critics.Concat):
      l1, g1 = loss_and_grads(tf.distribute.get_strategy(), estimator, critic)
      l2, g2 = loss_and_grads(mirrored, estimator, critic)
      key = f'{estimator}_{critic.__name__}'
      out[key] = {'loss_one': l1, 'loss_two': l2,
                  'max_grad_diff': max(float(np.max(np.abs(a - b))) for a, b in zip(g1, g2)),
                  'max_grad': max(float(np.max(np.abs(a))) for a in g1)}
  # A batch size the replicas cannot share is refused before anything is written.
  gin.clear_config()
  try:
    train_lib.train(sys.argv[2], task=mi_maximization.MIMaximization(), batch_size=15,
                    distribution='mirrored')
    out['indivisible_error'] = None
  except ValueError as e:
    out['indivisible_error'] = str(e)
  out['indivisible_dir_exists'] = os.path.exists(sys.argv[2])
  print(json.dumps(out))


if __name__ == '__main__':
  {'equivalence': equivalence}[sys.argv[1]]()
