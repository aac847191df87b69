"""Learned critics on a staircase of known MI (beyond the paper; Fig. 2 of Poole et al. 2019).

A critic is trained online on fresh batches of the correlated Gaussians of
``mi_tf.validation`` (dimension 20) while the true MI steps through 2, 4, 6, 8, 10 nats; the
per-step estimate should track the staircase: I_NCE below min(MI, log B), I_NWJ around the MI
with a variance that grows with it. The plot is made by ``scripts/plot_staircase.py``.
"""

import math

import numpy as np
import tensorflow as tf

from mi_tf import critics as critics_lib
from mi_tf import estimators
from mi_tf import optimizers
from mi_tf import validation


CRITICS = {
    # f(x, y) = phi1(x)^T phi2(y), each phi 256 ReLU -> 32.
    'separable': lambda: critics_lib.Separable(hidden_units=256, output_dim=32),
    # f(x, y) = phi([x, y]), 256 ReLU -> 1, on all B x B pairs.
    'concat': lambda: critics_lib.Concat(hidden_units=(256,)),
}


def mi_schedule(mi_levels, steps_per_level):
  """The true MI at every training step: each level held for steps_per_level -> [steps]."""
  return np.repeat(np.asarray(mi_levels, np.float64), steps_per_level)


def train_staircase(critic='separable', estimator='infonce', mi_levels=(2, 4, 6, 8, 10),
                    steps_per_level=1000, batch_size=128, dim=20, learning_rate=5e-4, seed=0):
  """Trains one critic on the staircase; returns the per-step training estimates.

  Returns:
    dict: 'true_mi' [steps] and 'estimate' [steps] (the estimator on that step's fresh
    batch, before its update), 'log_b'.
  """
  tf.keras.utils.set_random_seed(seed)
  model = CRITICS[critic]()
  model(tf.zeros((2, dim)), tf.zeros((2, dim)))
  optimizer = optimizers.FusedAdam(learning_rate)
  bound = estimators.get(estimator).value

  generator = tf.random.Generator.from_seed(seed)

  @tf.function
  def run_level(rho, num_steps):
    """num_steps updates on fresh batches at correlation rho -> estimates [num_steps]."""
    values = tf.TensorArray(tf.float32, size=num_steps)
    for k in tf.range(num_steps):
      x = generator.normal((batch_size, dim))
      y = rho * x + tf.sqrt(1.0 - rho * rho) * generator.normal((batch_size, dim))
      with tf.GradientTape() as tape:
        value = bound(model(x, y))
        loss = -value
      grads = tape.gradient(loss, model.trainable_variables)
      optimizer.apply_gradients(zip(grads, model.trainable_variables))
      values = values.write(k, value)
    return values.stack()

  true_mi = mi_schedule(mi_levels, steps_per_level)
  values = np.concatenate([
      run_level(tf.constant(validation.rho_for_mi(mi, dim), tf.float32),
                tf.constant(steps_per_level)).numpy() for mi in mi_levels]).astype(np.float64)
  return {'true_mi': true_mi, 'estimate': values, 'log_b': math.log(batch_size)}


def smooth(values, span=100):
  """Exponential moving average (span ~ number of steps averaged), NaN/inf-tolerant."""
  alpha = 2.0 / (span + 1.0)
  out = np.empty(len(values))
  avg = None
  for k, v in enumerate(values):
    if np.isfinite(v):
      avg = v if avg is None else alpha * v + (1 - alpha) * avg
    out[k] = np.nan if avg is None else avg
  return out
