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


def level_summary(run, mi_levels=None):
  """Bias and variance of the per-step estimates over the last half of each MI level.

  Args:
    run: ``train_staircase``'s output ('true_mi' [steps], 'estimate' [steps]).
    mi_levels: the levels, in order (default: those of run['true_mi'], in order of appearance).

  Returns:
    list, one dict per level: 'mi'; 'mean' (the mean of the finite estimates of the level's
    last half), 'bias' (mean - mi), 'variance' (their PLAIN variance, ddof=1, no trend
    removed: the level's last half is where the critic has settled), 'sd', 'n' (finite
    estimates) and 'n_nonfinite' (NaN or inf estimates left out). Without two finite
    estimates the variance is NaN (without one, mean and bias too).
  """
  true_mi = np.asarray(run['true_mi'], np.float64)
  estimate = np.asarray(run['estimate'], np.float64)
  if mi_levels is None:
    mi_levels = list(dict.fromkeys(true_mi.tolist()))
  out = []
  for mi in mi_levels:
    idx = np.flatnonzero(true_mi == mi)
    tail = estimate[idx[len(idx) // 2:]]
    finite = tail[np.isfinite(tail)]
    mean = float(np.mean(finite)) if len(finite) else math.nan
    variance = float(np.var(finite, ddof=1)) if len(finite) > 1 else math.nan
    out.append({'mi': float(mi), 'mean': mean, 'bias': mean - float(mi),
                'variance': variance, 'sd': math.sqrt(variance), 'n': int(len(finite)),
                'n_nonfinite': int(len(tail) - len(finite))})
  return out


def train_on_samples(x, y, critic='separable', estimator='infonce', num_steps=2000,
                     batch_size=128, learning_rate=5e-4, seed=0, test=None, eval_every=250):
  """Trains a critic on a FIXED sample (minibatches drawn from it), as for a benchmark task.

  The same optimizer and objective as ``train_staircase``, but the batches are drawn without
  replacement from the rows of ``x``, ``y`` (a fresh permutation each step) instead of fresh
  Gaussian draws.

  Args:
    x: [n, dx], y: [n, dy] paired samples (float).
    critic: a name of CRITICS, or a function () -> critic layer.
    estimator: a registered estimator name (trained with its objective).
    num_steps, batch_size, learning_rate, seed: the schedule.
    test: None, or held-out (x_test, y_test): ``estimate_on_samples`` of the critic on them
      every ``eval_every`` steps and at the end.

  Returns:
    (the trained critic, per-step training estimates [num_steps] as float64, the test curve
    [(step, estimate)], empty without ``test``).
  """
  x = tf.constant(np.asarray(x, np.float32))
  y = tf.constant(np.asarray(y, np.float32))
  n = int(x.shape[0])
  if batch_size > n:
    raise ValueError(f'batch_size {batch_size} > the {n} samples.')
  tf.keras.utils.set_random_seed(seed)
  model = CRITICS[critic]() if isinstance(critic, str) else critic()
  model(x[:2], y[:2])
  optimizer = optimizers.FusedAdam(learning_rate)
  bound = estimators.get(estimator).value
  generator = tf.random.Generator.from_seed(seed)

  @tf.function
  def run(num):
    values = tf.TensorArray(tf.float32, size=num)
    for k in tf.range(num):
      idx = tf.argsort(generator.uniform((n,)))[:batch_size]
      with tf.GradientTape() as tape:
        value = bound(model(tf.gather(x, idx), tf.gather(y, idx)))
        loss = -value
      grads = tape.gradient(loss, model.trainable_variables)
      optimizer.apply_gradients(zip(grads, model.trainable_variables))
      values = values.write(k, value)
    return values.stack()

  chunk = num_steps if test is None else max(1, int(eval_every))
  trace, curve, done = [], [], 0
  while done < num_steps:
    num = min(chunk, num_steps - done)
    trace.append(run(tf.constant(num)).numpy())
    done += num
    if test is not None:
      curve.append((done, estimate_on_samples(model, estimator, *test)))
  return model, np.concatenate(trace).astype(np.float64), curve


def estimate_on_samples(model, estimator, x, y, block_size=None):
  """The estimator of a trained critic on paired samples (float64 scores).

  block_size None: one score matrix over all n pairs (every other sample a negative); else the
  mean of the estimates of consecutive blocks of block_size pairs (the rest dropped).
  """
  x = tf.constant(np.asarray(x, np.float32))
  y = tf.constant(np.asarray(y, np.float32))
  value = estimators.get(estimator).value
  n = int(x.shape[0])
  size = n if block_size is None else int(block_size)
  blocks = [tf.cast(model(x[k:k + size], y[k:k + size]), tf.float64)
            for k in range(0, n - size + 1, size)]
  return float(np.mean([float(value(s)) for s in blocks]))
