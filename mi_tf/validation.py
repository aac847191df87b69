"""Estimator validation against a known MI (beyond the paper; the setting of Poole et al. 2019).

Correlated Gaussians of dimension d: x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) n with
n ~ N(0, I_d), so every coordinate pair (x_k, y_k) has correlation rho and
``I(X; Y) = -d/2 log(1 - rho^2)``; ``rho_for_mi`` inverts this to set the MI (2, 4, ..., 10
nats at d = 20). The optimal critic is known in closed form, the log density ratio

  log p(y | x) / p(y) = -d/2 log(1 - rho^2) - |y - rho x|^2 / (2 (1 - rho^2)) + |y|^2 / 2,

(plus 1 for NWJ, whose optimal critic is 1 + log p(y|x)/p(y)), so the estimators of
``mi_tf.estimators`` can be checked without any training: I_NCE <= log B always and close to
min(MI, log B) minus its known bias; I_NWJ unbiased, with a variance growing like e^MI.

Pure NumPy/TensorFlow math: no gin, no Keras.
"""

import math

import numpy as np
import tensorflow as tf

from mi_tf import estimators


def rho_for_mi(mi, dim):
  """Per-coordinate correlation rho giving I(X; Y) = mi nats in dimension dim."""
  return math.sqrt(-math.expm1(-2.0 * mi / dim))


def mi_for_rho(rho, dim):
  """I(X; Y) = -dim/2 log(1 - rho^2) in nats."""
  return -0.5 * dim * math.log1p(-rho * rho)


def sample_correlated_gaussian(rng, num_batches, batch_size, dim, mi):
  """Draws ``num_batches`` batches of pairs (x_i, y_i) with I(X; Y) = mi.

  Args:
    rng: numpy.random.Generator.
    num_batches, batch_size, dim: n, B, d.
    mi: the mutual information in nats.

  Returns:
    (x, y): float64 arrays [n, B, d]; y = rho x + sqrt(1 - rho^2) noise.
  """
  rho = rho_for_mi(mi, dim)
  x = rng.standard_normal((num_batches, batch_size, dim))
  noise = rng.standard_normal((num_batches, batch_size, dim))
  return x, rho * x + math.sqrt(1.0 - rho * rho) * noise


def optimal_scores(x, y, rho):
  """The optimal critic log p(y_j | x_i) / p(y_j) for every pair of every batch.

  Args:
    x, y: arrays [..., B, d] (e.g. [n, B, d]).
    rho: per-coordinate correlation.

  Returns:
    float64 array [..., B, B], ``S[..., i, j] = log p(y_j | x_i) - log p(y_j)``; positives on
    the diagonal. Add 1 for the optimal NWJ critic.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  dim = x.shape[-1]
  one_minus = 1.0 - rho * rho
  xy = np.einsum('...id,...jd->...ij', x, y)
  x_sq = np.sum(x * x, axis=-1)[..., :, None]
  y_sq = np.sum(y * y, axis=-1)[..., None, :]
  # |y_j - rho x_i|^2 = |y_j|^2 - 2 rho x_i.y_j + rho^2 |x_i|^2.
  cond = -(y_sq - 2.0 * rho * xy + rho * rho * x_sq) / (2.0 * one_minus)
  return -0.5 * dim * math.log(one_minus) + cond + 0.5 * y_sq


@tf.function
def _map_estimator(scores, name):
  return tf.map_fn(estimators.get(name).value, scores, fn_output_signature=scores.dtype)


def per_batch_estimates(scores, estimator):
  """A registered estimator (``mi_tf.estimators.REGISTRY``, by name) on each batch of
  ``scores`` [n, B, B].

  Returns:
    numpy array [n] (dtype of ``scores``; pass float64 to avoid overflow in NWJ at high MI).
  """
  return _map_estimator(tf.convert_to_tensor(scores), estimator).numpy()


def optimal_critic_estimates(mi, num_batches=2000, batch_size=128, dim=20, seed=0,
                             chunk=250):
  """I_NCE and I_NWJ of the analytic optimal critics on ``num_batches`` fresh batches.

  I_NCE uses S = log p(y|x)/p(y) (its value does not change under S + c(x), so 1 + S gives
  the same), I_NWJ uses its own optimal critic 1 + S.

  Returns:
    dict with 'infonce' and 'nwj': float64 arrays [num_batches] of per-batch estimates, and
    'joint_term': the per-batch mean of the NWJ critic on the positives (its expectation is
    MI + 1 exactly), 'marginal_term': the per-batch e^-1 mean of exp(1 + S) off the diagonal
    = mean exp(S) (its expectation is 1 exactly); I_NWJ = joint_term - marginal_term.
  """
  rng = np.random.default_rng(seed)
  rho = rho_for_mi(mi, dim)
  out = {'infonce': [], 'nwj': [], 'joint_term': [], 'marginal_term': []}
  for start in range(0, num_batches, chunk):
    n = min(chunk, num_batches - start)
    x, y = sample_correlated_gaussian(rng, n, batch_size, dim, mi)
    s = optimal_scores(x, y, rho)
    out['infonce'].append(per_batch_estimates(s, 'infonce'))
    out['nwj'].append(per_batch_estimates(s + 1.0, 'nwj'))
    diag = np.einsum('...ii->...i', s)
    out['joint_term'].append(1.0 + diag.mean(axis=-1))
    off = ~np.eye(batch_size, dtype=bool)
    out['marginal_term'].append(np.exp(s)[:, off].mean(axis=-1))
  return {k: np.concatenate(v) for k, v in out.items()}
