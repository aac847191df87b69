"""Test helper: one task loss on the replicas of a strategy (used by the subprocess checks that
compare two CPU replicas with one device; logical devices are set up by the caller)."""

import tensorflow as tf

from mi_tf import distribute


def loss_on_replicas(strategy, task, batch_fn):
  """Runs ``task.loss`` on every replica of ``strategy``.

  Args:
    strategy: a tf.distribute strategy whose scope built ``task``.
    task: a Task with ``loss(batch) -> (replica loss, I_EST)`` and ``variables``.
    batch_fn: ``ctx -> per-replica batch`` (``experimental_distribute_values_from_function``).

  Returns:
    (global loss per replica, I_EST per replica, the gradients summed over replicas as seen by
    the first replica), each as tensors.
  """
  def replica(bt):
    with tf.GradientTape() as tape:
      replica_loss, i_est = task.loss(bt)
    grads = distribute.all_reduce_sum(tape.gradient(replica_loss, task.variables))
    return replica_loss * distribute.num_replicas(), i_est, grads

  @tf.function
  def run(bt):
    loss, i_est, grads = strategy.run(replica, args=(bt,))
    local = strategy.experimental_local_results
    return local(loss), local(i_est), [local(g)[0] for g in grads]

  return run(strategy.experimental_distribute_values_from_function(batch_fn))
