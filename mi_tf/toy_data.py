"""The 2-d Gaussian toy of Sec. 4 (Fig. 4c): i.i.d. versus non-i.i.d. batches of scalar pairs.

Non-i.i.d. batches (the Colab's construction): ONE ``Z ~ N(0, Sigma_Z)`` per batch, shared by
all its elements, plus ``e_i ~ N(0, Sigma_e)`` per element, and ``(x_i, y_i) = Z + e_i``. Every
pair then has the marginal ``N(0, Sigma_Z + Sigma_e)``, but the pairs of a batch are dependent
(they share Z), which breaks the i.i.d. assumption behind the InfoNCE and NWJ bounds. The
i.i.d. control draws each pair independently from that same marginal ``N(0, Sigma_Z +
Sigma_e)``. Paper: Sigma_Z = [[1, -.5], [-.5, 1]], Sigma_e = [[1, .9], [.9, 1]], marginal
[[2, .4], [.4, 2]], true MI -1/2 log(1 - rho^2) = 0.0204 nats with rho = 0.4 / 2.

All samplers are stateless: a batch is a pure function of its seed (int32/int64 [2]), so the
training stream of ``mi_tf.tasks.gaussian_toy`` is a pure function of (seed, step). This module is
math only (no gin, no Keras).
"""

import math

import numpy as np
import tensorflow as tf

SIGMA_Z = ((1.0, -0.5), (-0.5, 1.0))
SIGMA_E = ((1.0, 0.9), (0.9, 1.0))
SAMPLINGS = ('iid', 'noniid')


def gaussian_mi(cov):
  """MI in nats between the two coordinates of a 2-d Gaussian with covariance ``cov`` [2, 2].

  I(X; Y) = -1/2 log(1 - rho^2), rho^2 = cov[0, 1] cov[1, 0] / (cov[0, 0] cov[1, 1]).
  """
  cov = np.asarray(cov, np.float64)
  rho_sq = cov[0, 1] * cov[1, 0] / (cov[0, 0] * cov[1, 1])
  return -0.5 * math.log1p(-rho_sq)


def marginal_cov(sigma_z=SIGMA_Z, sigma_e=SIGMA_E):
  """Covariance [2, 2] of one pair (x_i, y_i) = Z + e_i: Sigma_Z + Sigma_e."""
  return np.asarray(sigma_z, np.float64) + np.asarray(sigma_e, np.float64)


def true_mi(sigma_z=SIGMA_Z, sigma_e=SIGMA_E):
  """I(x_i; y_i) of one pair, from the covariances (paper: 0.0204 nats)."""
  return gaussian_mi(marginal_cov(sigma_z, sigma_e))


def _cholesky(cov):
  return tf.constant(np.linalg.cholesky(np.asarray(cov, np.float64)), tf.float32)


def _mvn(shape, chol, seed):
  """Stateless draws [*shape, 2] of N(0, chol chol^T)."""
  eps = tf.random.stateless_normal(list(shape) + [2], seed=seed, dtype=tf.float32)
  return tf.linalg.matvec(chol, eps)


def sample_noniid(batch_size, seed, sigma_z=SIGMA_Z, sigma_e=SIGMA_E):
  """One non-i.i.d. batch: (x_i, y_i) = Z + e_i with ONE Z for the whole batch (Sec. 4).

  Args:
    batch_size: B, the number of pairs (the GLOBAL batch under tf.distribute).
    seed: stateless seed, int tensor [2].

  Returns:
    (x, y): float32 [B, 1] each.
  """
  seed = tf.cast(seed, tf.int64)
  seeds = tf.random.experimental.stateless_split(seed, num=2)
  z = _mvn([1], _cholesky(sigma_z), seeds[0])                # [1, 2]: shared by the batch.
  e = _mvn([batch_size], _cholesky(sigma_e), seeds[1])       # [B, 2]
  xy = z + e
  return xy[:, :1], xy[:, 1:]


def sample_iid(batch_size, seed, sigma_z=SIGMA_Z, sigma_e=SIGMA_E):
  """One i.i.d. batch: every pair drawn independently from N(0, Sigma_Z + Sigma_e).

  Returns:
    (x, y): float32 [B, 1] each.
  """
  xy = _mvn([batch_size], _cholesky(marginal_cov(sigma_z, sigma_e)), tf.cast(seed, tf.int64))
  return xy[:, :1], xy[:, 1:]


def sample(sampling, batch_size, seed, sigma_z=SIGMA_Z, sigma_e=SIGMA_E):
  """``sample_iid`` or ``sample_noniid`` by name ('iid' or 'noniid')."""
  if sampling == 'iid':
    return sample_iid(batch_size, seed, sigma_z, sigma_e)
  if sampling == 'noniid':
    return sample_noniid(batch_size, seed, sigma_z, sigma_e)
  raise ValueError(f'Unknown sampling {sampling!r}; choose one of {SAMPLINGS}.')


def batch_seed(seed, step):
  """The stateless seed [2] of the training batch at ``step`` of a run seeded ``seed``."""
  return tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
