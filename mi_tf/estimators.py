"""Variational lower bounds on mutual information, as pure functions of a score matrix.

Sec. 2 of Tschannen et al. (ICLR 2020). A critic f scores every pair of a batch:
``scores[i, j] = f(x_i, y_j)``; the positive (jointly drawn) pair of row ``i`` is column
``i + row_offset``. With ``row_offset = 0`` and a square matrix this is the usual estimator on
one device; under ``tf.distribute`` each replica holds a block of rows ``[b, B]`` (its own
positives against the representations of ALL replicas) and passes the offset of its first row,
so that the mean of the per-row terms over all replicas is exactly the global-batch estimator.

This module imports neither gin nor Keras: it is math only.

- InfoNCE (van den Oord et al., 2018; Eq. 3 of the paper):
  ``I_NCE = log B + mean_i( S[i, i] - logsumexp_j S[i, j] )``, never above ``log B``.
- NWJ (Nguyen, Wainwright and Jordan, 2010; Eq. 4):
  ``I_NWJ = mean_i S[i, i] - e^-1 mean_{i != j} exp(S[i, j])``; its optimal critic is
  ``1 + log p(y|x) / p(y)``.

Both agree with ``tfp.vi.mutual_information.lower_bound_info_nce`` and
``lower_bound_nguyen_wainwright_jordan`` (tested in tests/test_estimators.py); we keep our own
per-row form because the tfp functions reduce over the whole matrix and cannot take the
cross-replica row block.
"""

import dataclasses
import math
from typing import Callable

import tensorflow as tf


def _positive_scores(scores, row_offset):
  """Returns ``S[i, i + row_offset]`` for every row ``i``; shape [b]."""
  b = tf.shape(scores)[0]
  cols = tf.range(b) + tf.cast(row_offset, tf.int32)
  return tf.gather(scores, cols, axis=1, batch_dims=1)


def infonce_per_row(scores, row_offset=0):
  """Per-row InfoNCE terms ``log B + S[i, i+o] - logsumexp_j S[i, j]``.

  Args:
    scores: float tensor [b, B], ``scores[i, j] = f(x_i, y_j)``; B is the global batch size.
    row_offset: column index of row 0's positive (0 on one device).

  Returns:
    Tensor [b] whose mean over all B rows (all replicas) is I_NCE.
  """
  scores = tf.convert_to_tensor(scores)
  log_b = tf.math.log(tf.cast(tf.shape(scores)[1], scores.dtype))
  return (log_b + _positive_scores(scores, row_offset)
          - tf.reduce_logsumexp(scores, axis=1))


def nwj_per_row(scores, row_offset=0):
  """Per-row NWJ terms ``S[i, i+o] - e^-1 / (B - 1) sum_{j != i+o} exp(S[i, j])``.

  The off-diagonal sum is computed as ``exp(logsumexp(S[i, j] - 1 + log mask))`` so that a
  large positive score does not overflow on its own; exp of a large NEGATIVE-critic score
  can still overflow float32 above ~88 nats, which the training loop reports.

  Args:
    scores: float tensor [b, B].
    row_offset: column index of row 0's positive.

  Returns:
    Tensor [b] whose mean over all B rows is I_NWJ.
  """
  scores = tf.convert_to_tensor(scores)
  b = tf.shape(scores)[0]
  big_b = tf.shape(scores)[1]
  positive = _positive_scores(scores, row_offset)
  is_positive = tf.one_hot(tf.range(b) + tf.cast(row_offset, tf.int32), big_b,
                           on_value=True, off_value=False, dtype=tf.bool)
  negatives = tf.where(is_positive, tf.constant(-math.inf, scores.dtype), scores - 1.0)
  log_mean_neg = (tf.reduce_logsumexp(negatives, axis=1)
                  - tf.math.log(tf.cast(big_b - 1, scores.dtype)))
  return positive - tf.exp(log_mean_neg)


def infonce(scores):
  """I_NCE of a square score matrix [B, B] (positives on the diagonal); a scalar."""
  return tf.reduce_mean(infonce_per_row(scores))


def nwj(scores):
  """I_NWJ of a square score matrix [B, B] (positives on the diagonal); a scalar."""
  return tf.reduce_mean(nwj_per_row(scores))


@dataclasses.dataclass(frozen=True)
class Estimator:
  """One MI estimator as the rest of the project sees it.

  name: the name in gin files and run metadata (``MIMaximization.estimator = 'infonce'``).
  metric: the prefix of its logged values (``I_NCE/test``, ``I_NCE/train``, ``I_NCE/eval``).
  per_row: ``fn(scores [b, B], row_offset) -> [b]``, whose mean over the B rows of the global
    batch is the estimate (the form above; the training loss and every evaluation use it).
  """
  name: str
  metric: str
  per_row: Callable

  def value(self, scores):
    """The estimate of a square score matrix [B, B] (positives on the diagonal); a scalar."""
    return tf.reduce_mean(self.per_row(scores))


# THE registry of estimators: name -> Estimator. Training objectives, evaluations (which log
# every registered estimator), the known-MI validation and the staircase all look estimators
# up here, so adding one is a per-row function and one ``register`` call.
REGISTRY = {}


def register(name, metric, per_row):
  """Adds an estimator under ``name`` (gin) with logged prefix ``metric``; returns it."""
  if name in REGISTRY:
    raise ValueError(f'Estimator {name!r} is already registered.')
  if any(e.metric == metric for e in REGISTRY.values()):
    raise ValueError(f'Metric name {metric!r} is already used by another estimator.')
  REGISTRY[name] = Estimator(name, metric, per_row)
  return REGISTRY[name]


def get(name):
  """The registered Estimator called ``name``; a ValueError names the choices."""
  try:
    return REGISTRY[name]
  except KeyError:
    raise ValueError(f'Unknown estimator {name!r}; choose one of {sorted(REGISTRY)}.') from None


register('infonce', 'I_NCE', infonce_per_row)
register('nwj', 'I_NWJ', nwj_per_row)
