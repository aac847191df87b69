"""What a run trains and evaluates: the training loop (``mi_tf.train_lib``) drives a ``Task``.

A task owns its models and optimizers (built inside the strategy's scope), its input stream,
one training step (in replica context), its evaluation and the model it exports. New kinds of
experiment are new tasks (one module each in this package, named like its class); new
encoders or critics are new classes named in a gin file. Neither edits the training loop.

This module holds what every task shares: the interface, the finite-or-zero update and the
cross-replica estimator value that the MI tasks train.
"""

import tensorflow as tf

from mi_tf import distribute


class Task:
  """Interface between an experiment and the training loop (see train_lib.train)."""

  name = 'task'
  # Evaluation metrics that must be finite (training stops otherwise); others are only logged.
  finite_metrics = ()
  # The training-log metric the task minimises: a finished run whose last log window is not
  # below its first is recorded as degenerate (train_lib.degenerate_reasons); None: no such
  # metric (it need not fall in a working run).
  train_objective = 'loss'

  def check_inputs(self):
    """Validates data and settings before anything is built or written."""

  def build(self, global_batch_size, seed):
    """Creates models and optimizers; called once inside ``strategy.scope()``."""
    raise NotImplementedError

  def dataset_fn(self, global_batch_size, seed, start_step):
    """Returns fn(input_context) -> tf.data.Dataset of per-replica batches from start_step
    on; the stream must be a pure function of (seed, step) so that resuming is exact."""
    raise NotImplementedError

  def trackables(self):
    """Dict of name -> trackable saved in every checkpoint."""
    raise NotImplementedError

  def train_step(self, batch):
    """One update in replica context; returns dict of scalar tensors incl. 'loss' and
    'finite' (1.0 if loss and gradients were finite and the update was applied)."""
    raise NotImplementedError

  def evaluate(self, step, final=False):
    """Returns dict name -> float (scalars) or numpy array (logged as a histogram).

    ``final`` is True at the run's last evaluation; tasks with a probe then (and at step 0)
    also fit the converged probe (``evaluation.probe_metrics(..., converged=True)``).
    """
    raise NotImplementedError

  def export_model(self):
    """(keras model, input shape) of the representation to export, or None.

    By default the encoder g1 of X1 (``self.g1``, built with ``self.input_shape``) if the
    task has one: the representation the paper probes.
    """
    g1 = getattr(self, 'g1', None)
    return None if g1 is None else (g1, self.input_shape)

  def metadata(self):
    """What the run's run_info.json and its export record of the task: its name, and Adam's
    epsilon, the dataset and the encoder class where the task has them; tasks add theirs."""
    out = {'task': self.name}
    if hasattr(self, 'adam_epsilon'):
      out['adam_epsilon'] = self.adam_epsilon
    if hasattr(self, 'data'):
      out['dataset'] = self.data.dataset
    if hasattr(self, 'encoder_cls'):
      out['encoder'] = class_name(self.encoder_cls)
    return out


def class_name(factory):
  """The name of a model class or factory, for a task's metadata ('MLP', 'Bilinear', ...)."""
  return getattr(factory, '__name__', str(factory))


def apply_if_finite(optimizer, loss, grads, variables):
  """Sums gradients over replicas and applies them, zeroed if the step is not finite.

  Returns (global gradient norm, finite flag as float32). A step whose loss or gradient norm
  is NaN/inf applies a ZERO gradient instead, so NaN or inf never reaches the weights (Adam's
  moments still decay, as for any zero gradient; the training loop stops at such a step under
  nonfinite_policy='stop', before anything is saved, or counts it under 'skip'). A real
  conditional update is not possible here: Keras 3 optimizers synchronise replicas inside
  apply_gradients, which TF forbids inside tf.cond.

  Keras 3 optimizers all-reduce (sum) gradients themselves in replica context; we need the
  global gradient first (for its norm and the finiteness test, identical on all replicas), so
  we pass it divided by the replica count and the optimizer's sum restores it.
  """
  grads = distribute.all_reduce_sum(grads)
  grad_norm = tf.linalg.global_norm(grads)
  finite = tf.logical_and(tf.math.is_finite(loss), tf.math.is_finite(grad_norm))
  scale = 1.0 / distribute.num_replicas()
  optimizer.apply_gradients(
      [(tf.where(finite, g * scale, tf.zeros_like(g)), v) for g, v in zip(grads, variables)])
  return grad_norm, tf.cast(finite, tf.float32)


def global_estimate(estimator, critic, x, y, global_batch_size):
  """The estimator over the GLOBAL batch, from one replica's rows (replica context).

  Each replica scores its own positives ``x`` [b, D] against the ``y`` of ALL replicas
  (``distribute.cross_replica_concat``: [B, D]) and sums its per-row terms (rows
  ``[r b, (r + 1) b)`` of the global batch, ``distribute.replica_row_offset``); the sum over
  replicas divided by B is the global-batch estimate, the same on every replica and for any
  number of replicas.

  Args:
    estimator: a ``mi_tf.estimators.Estimator``.
    critic: ``critic(x [b, D], y [B, D]) -> scores [b, B]``.
    x, y: this replica's representations of the two views, [b, D] each.
    global_batch_size: B.
  Returns:
    Scalar tensor, the estimate I_EST of the global batch. An estimator that is no mean of
    per-row terms (I_DV, I_SMILE: ``estimator.is_row_mean`` False) combines per-row statistics
    gathered from every replica instead (``Estimator.global_value``): the same global value.
  """
  scores = critic(x, distribute.cross_replica_concat(y))
  offset = distribute.replica_row_offset(tf.shape(x)[0])
  if not estimator.is_row_mean:
    return estimator.global_value(scores, offset, gather=distribute.cross_replica_concat)
  rows = estimator.per_row(scores, offset)
  return distribute.all_reduce_sum(tf.reduce_sum(rows)) / global_batch_size
