"""Local conditioning of an encoder (Sec. 3.1, Fig. 2c, Fig. 5): log condition numbers of
its input Jacobian at data points, log(sigma_max / sigma_min).

Pure functions of a callable and inputs (no gin, no Keras state). The percentiles follow the
authors' Colab: over N inputs sorted ascending, percentile p is the value at index
floor(p / 100 * (N - 1)) (``np.percentile(..., method='lower')``).
"""

import numpy as np
import tensorflow as tf

PERCENTILES = (0, 20, 40, 60, 80, 100)


def input_jacobian(fn, x):
  """Per-example Jacobian of ``fn`` with respect to its (flattened) input.

  Args:
    fn: maps a batch [N, *S] to [N, D_out], each output row depending only on its input row
      (true of every encoder here).
    x: inputs [N, *S] (e.g. [N, 14, 28, 1]).

  Returns:
    J: [N, D_out, D_in] with D_in = prod(S), J[n, i, j] = d fn(x)[n, i] / d x[n, j].
  """
  x = tf.convert_to_tensor(x)
  shape = tf.shape(x)
  flat = tf.reshape(x, [shape[0], -1])
  with tf.GradientTape() as tape:
    tape.watch(flat)
    y = fn(tf.reshape(flat, shape))
  return tape.batch_jacobian(y, flat)


def log_condition_numbers(jacobians):
  """log sigma_max - log sigma_min of each matrix: [N, m, n] -> float64 numpy [N].

  Singular values are computed in float64 (an ill-conditioned float32 Jacobian loses its
  smallest singular values to round-off otherwise). A singular matrix gives inf.
  """
  s = tf.linalg.svd(tf.cast(jacobians, tf.float64), compute_uv=False).numpy()  # Descending.
  with np.errstate(divide='ignore'):
    return np.log(s[:, 0]) - np.log(s[:, -1])


def log_condition_summary(fn, x, prefix='jacobian/log_cond'):
  """Evaluation metrics of the Jacobian conditioning of ``fn`` at inputs ``x`` [N, *S].

  Returns:
    dict: '<prefix>_p0', '_p20', ..., '_p100' and '<prefix>_median' (floats, percentiles over
    the N inputs) and '<prefix>' (numpy [N], logged as a histogram).
  """
  values = log_condition_numbers(tf.function(lambda t: input_jacobian(fn, t))(x))
  out = {f'{prefix}_p{p}': float(np.percentile(values, p, method='lower'))
         for p in PERCENTILES}
  out[f'{prefix}_median'] = float(np.median(values))
  out[prefix] = values
  return out
