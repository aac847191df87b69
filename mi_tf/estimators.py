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

Beyond the paper, the family of Poole et al. (ICML 2019, "On Variational Bounds of Mutual
Information") and Song and Ermon (ICLR 2020), tested in tests/test_estimator_family.py:

- I_DV (Donsker-Varadhan, MINE's bound; Belghazi et al. 2018; Poole et al. Sec. 2.2):
  ``mean_i S[i, i] - log mean_{i != j} exp(S[i, j])``. NOT a mean of per-row terms: each row
  gives statistics (its positive score, the logsumexp of its negatives, their count) and
  ``dv_combine`` takes them over the global batch (``Estimator.global_value`` gathers them from
  every replica), so the value is the global-batch one for any number of replicas. MINE's
  moving-average correction of the gradient needs state across steps and is not here.
- I_SMILE(tau) (Song and Ermon 2020): I_DV with the negatives' exp(S) clipped to
  [e^-tau, e^tau] (default tau = 5); the critic is trained with the JS objective, as in their
  released code.
- I_JS (Poole et al.'s "JS" estimator): the critic is trained with the f-GAN Jensen-Shannon
  objective (Nowozin et al. 2016; ``tfp...lower_bound_jensen_shannon``) and the reported
  estimate is I_NWJ of the critic + 1 (its optimum is the log density ratio; NWJ's is 1 +
  that).
- I_TUBA(a) (Poole et al. Sec. 2.2): ``1 + mean_i (S[i, i] - a) - mean_{i != j} exp(S[i, j] - a)``
  with a log-baseline a; a = 1 is I_NWJ. Registered with a = 0 (Poole et al.'s Colab
  ``tuba_lower_bound`` without a baseline); a learned baseline is the task's to add.
- I_alpha (Poole et al. Sec. 2.4, their Colab's ``interpolated_lower_bound``): TUBA with the
  baseline ``alpha * (leave-one-out mean of exp(S) over the row) + (1 - alpha) * e^a``; alpha = 1 is
  InfoNCE over B - 1 samples, alpha = 0 is TUBA(a). Registered with alpha = 0.5 and a = 1 (so
  that alpha = 0 would be I_NWJ).

For an estimator whose training objective differs from its estimate (I_JS, I_SMILE) the
registered terms have the estimate's value and the objective's gradient (Poole et al.'s
``objective + stop_gradient(estimate - objective)``), so every caller that maximises the value
trains the right objective and logs the estimate.
"""

import dataclasses
import math
from typing import Callable, Optional

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
  big_b = tf.shape(scores)[1]
  positive = _positive_scores(scores, row_offset)
  negatives = tf.where(_positive_mask(scores, row_offset), tf.constant(-math.inf, scores.dtype),
                       scores - 1.0)
  log_mean_neg = (tf.reduce_logsumexp(negatives, axis=1)
                  - tf.math.log(tf.cast(big_b - 1, scores.dtype)))
  return positive - tf.exp(log_mean_neg)


def infonce(scores):
  """I_NCE of a square score matrix [B, B] (positives on the diagonal); a scalar."""
  return tf.reduce_mean(infonce_per_row(scores))


def nwj(scores):
  """I_NWJ of a square score matrix [B, B] (positives on the diagonal); a scalar."""
  return tf.reduce_mean(nwj_per_row(scores))


def _positive_mask(scores, row_offset):
  """True at each row's positive column ``i + row_offset``; bool [b, B]."""
  b = tf.shape(scores)[0]
  return tf.one_hot(tf.range(b) + tf.cast(row_offset, tf.int32), tf.shape(scores)[1],
                    on_value=True, off_value=False, dtype=tf.bool)


def _log_sum_exp_negatives(scores, row_offset):
  """``logsumexp_{j != i+o} S[i, j]`` of every row (the positive left out); shape [b]."""
  neg_inf = tf.constant(-math.inf, scores.dtype)
  return tf.reduce_logsumexp(tf.where(_positive_mask(scores, row_offset), neg_inf, scores),
                             axis=1)


def _log_num_negatives(scores):
  """``log(B - 1)``, the log of the number of negatives of a row; a scalar."""
  return tf.math.log(tf.cast(tf.shape(scores)[1] - 1, scores.dtype))


def _row_vector(value, scores):
  """A scalar or [b] value as a [b] tensor of the dtype of ``scores``."""
  value = tf.cast(value, scores.dtype)
  return tf.broadcast_to(value, tf.shape(scores)[:1])


def _log_add_exp(a, b):
  """``log(e^a + e^b)`` elementwise (broadcast), exact when one side is -inf (a weight 0)."""
  shape = tf.broadcast_dynamic_shape(tf.shape(a), tf.shape(b))
  return tf.reduce_logsumexp(tf.stack([tf.broadcast_to(a, shape), tf.broadcast_to(b, shape)]),
                             axis=0)


# ------------------------------------------------------------------------------------------
# TUBA (Poole et al. 2019, Sec. 2.2) and the Jensen-Shannon-trained critic (Poole et al.).


def tuba_per_row(scores, row_offset=0, log_baseline=0.0):
  """Per-row TUBA terms ``1 + S[i, i+o] - a_i - 1/(B-1) sum_{j != i+o} exp(S[i, j] - a_i)``.

  I_TUBA (Poole et al. 2019, Sec. 2.2) with a log-baseline a:
  1 + E_p[f - a] - E_{p(x)p(y)}[e^(f - a)].
  The baseline may be a constant or depend on the row's conditioning variable (rows here, x_i;
  Poole et al.'s a(y) is the same bound with the roles of x and y swapped); with a = 1 this is
  ``nwj_per_row`` and with a = log E_q[e^f] (the best constant) it is I_DV.

  Args:
    scores: float tensor [b, B], ``scores[i, j] = f(x_i, y_j)``.
    row_offset: column index of row 0's positive.
    log_baseline: the log-baseline a, a scalar or a [b] tensor (one per row); a tensor such
      as a trainable variable is differentiated through.

  Returns:
    Tensor [b] whose mean over all B rows is I_TUBA.
  """
  scores = tf.convert_to_tensor(scores)
  a = _row_vector(log_baseline, scores)
  log_mean_neg = _log_sum_exp_negatives(scores, row_offset) - _log_num_negatives(scores)
  return 1.0 + _positive_scores(scores, row_offset) - a - tf.exp(log_mean_neg - a)


def js_objective_per_row(scores, row_offset=0):
  """Per-row f-GAN JS terms ``-softplus(-S[i, i+o]) - mean_{j != i+o} softplus(S[i, j])``.

  The JS objective of Nowozin et al. (2016) as Poole et al. (2019, "JS") train a critic
  with: E_p[-softplus(-f)] - E_{p(x)p(y)}[softplus(f)] (= 2 JSD - log 4 at its maximum). Its
  maximiser is the log density ratio f* = log p(y|x) / p(y). The mean over the rows equals
  ``tfp.vi.mutual_information.lower_bound_jensen_shannon`` (tested).

  Returns:
    Tensor [b] whose mean over all B rows is the JS objective (a bound on a divergence, not
    an MI estimate).
  """
  scores = tf.convert_to_tensor(scores)
  soft = tf.where(_positive_mask(scores, row_offset), tf.zeros_like(scores),
                  tf.nn.softplus(scores))
  num_neg = tf.cast(tf.shape(scores)[1] - 1, scores.dtype)
  return (-tf.nn.softplus(-_positive_scores(scores, row_offset))
          - tf.reduce_sum(soft, axis=1) / num_neg)


def js_estimate_per_row(scores, row_offset=0):
  """Per-row terms of the MI estimate of a JS-trained critic: I_NWJ of ``scores + 1``.

  The JS critic converges to f* = log p(y|x)/p(y), and NWJ's optimal critic is 1 + f*, so the
  estimate is I_NWJ(f + 1) = 1 + E_p[f] - E_q[e^f] (= ``tuba_per_row`` with a = 0), unbiased
  at the JS optimum. (Poole et al.'s Colab and Song and Ermon's code evaluate I_NWJ(f) without
  the shift, which is 1/e below the MI at the JS optimum; tests/test_estimator_family.py
  measures both.)

  Returns:
    Tensor [b] whose mean over all B rows is I_JS.
  """
  return tuba_per_row(scores, row_offset, log_baseline=0.0)


# ------------------------------------------------------------------------------------------
# Donsker-Varadhan (MINE) and SMILE: functions of cross-replica reductions, not row means.


def dv_statistics(scores, row_offset=0, clip=None):
  """Per-row statistics of I_DV (and I_SMILE): their global sums give the estimate.

  Args:
    scores: float tensor [b, B].
    row_offset: column index of row 0's positive.
    clip: None (I_DV) or tau > 0: the NEGATIVE scores are clipped to [-tau, tau] before the
      log-mean-exp (I_SMILE), i.e. exp(S) to [e^-tau, e^tau]; the positives are not clipped.

  Returns:
    dict of [b] tensors: 'positive' S[i, i+o]; 'log_sum_exp_negatives' logsumexp over the
    row's negatives (of the clipped scores); 'num_negatives' B - 1. ``dv_combine`` takes them
    over the GLOBAL batch ([B] each, rows of all replicas).
  """
  scores = tf.convert_to_tensor(scores)
  negatives = scores if clip is None else tf.clip_by_value(scores, -clip, clip)
  num_neg = tf.cast(tf.shape(scores)[1] - 1, scores.dtype)
  return {'positive': _positive_scores(scores, row_offset),
          'log_sum_exp_negatives': _log_sum_exp_negatives(negatives, row_offset),
          'num_negatives': _row_vector(num_neg, scores)}


def dv_combine(stats):
  """I_DV = mean_i S[i, i] - log( sum_i sum_{j != i} exp(S[i, j]) / sum_i (B - 1) ).

  Args:
    stats: ``dv_statistics`` of every row of the global batch ([B] tensors).
  Returns:
    Scalar tensor.
  """
  log_mean_neg = (tf.reduce_logsumexp(stats['log_sum_exp_negatives'])
                  - tf.math.log(tf.reduce_sum(stats['num_negatives'])))
  return tf.reduce_mean(stats['positive']) - log_mean_neg


def dv(scores):
  """I_DV of a square score matrix [B, B] (positives on the diagonal); a scalar.

  Donsker and Varadhan's bound as MINE estimates it (Belghazi et al. 2018; Poole et al. 2019,
  Sec. 2.2): ``mean_i S[i, i] - log mean_{i != j} exp(S[i, j])``. Its optimal critic is
  log p(y|x)/p(y) + c for any constant c; I_DV >= I_NWJ of the same critic (log z <= z/e).
  """
  return dv_combine(dv_statistics(scores))


def smile_statistics(scores, row_offset=0, tau=5.0):
  """``dv_statistics`` with the negatives clipped to [-tau, tau] (Song and Ermon 2020)."""
  return dv_statistics(scores, row_offset, clip=None if math.isinf(tau) else tau)


def smile(scores, tau=5.0):
  """I_SMILE(tau) of a square score matrix [B, B]; a scalar (Song and Ermon 2020).

  ``mean_i S[i, i] - log mean_{i != j} clip(exp(S[i, j]), e^-tau, e^tau)``; tau = inf is I_DV.
  The clipping bounds the variance of the partition term at the price of a
  bias when the density ratio leaves [e^-tau, e^tau].
  """
  return dv_combine(smile_statistics(scores, tau=tau))


# ------------------------------------------------------------------------------------------
# Poole et al.'s interpolated bound I_alpha (Sec. 2.4; their Colab's interpolated_lower_bound).


def _log_sum_exp_leave_one_out(scores):
  """``log sum_{k != j} exp(S[i, k])`` for every entry; shape [b, B].

  Stable: for j other than the row's argmax, the row's max stays in the sum (so the sum of the
  others is >= 1 after the shift and the subtraction loses no digits); at the argmax the sum is
  recomputed without it.
  """
  row_max = tf.reduce_max(scores, axis=1, keepdims=True)
  shifted = tf.exp(scores - row_max)
  total = tf.reduce_sum(shifted, axis=1, keepdims=True)
  is_max = tf.one_hot(tf.argmax(scores, axis=1), tf.shape(scores)[1], on_value=True,
                      off_value=False, dtype=tf.bool)
  neg_inf = tf.constant(-math.inf, scores.dtype)
  without_max = tf.reduce_logsumexp(tf.where(is_max, neg_inf, scores), axis=1, keepdims=True)
  rest = tf.where(is_max, tf.ones_like(shifted), total - shifted)  # No log(0) where unused.
  return tf.where(is_max, tf.broadcast_to(without_max, tf.shape(scores)),
                  row_max + tf.math.log(rest))


def _log_weights(alpha):
  """(log alpha, log(1 - alpha)) as Python floats, -inf for a zero weight."""
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f'alpha must be in [0, 1], got {alpha!r}.')
  return (math.log(alpha) if alpha > 0 else -math.inf,
          math.log1p(-alpha) if alpha < 1 else -math.inf)


def alpha_per_row(scores, row_offset=0, alpha=0.5, log_baseline=1.0):
  """Per-row terms of Poole et al.'s interpolated bound I_alpha (Sec. 2.4).

  I_alpha is TUBA with the baseline ``alpha m + (1 - alpha) e^a`` where m is the multi-sample
  (InfoNCE) baseline: the mean of exp(f) over K = B - 1 of the row's columns, leaving one out
  (as their ``interpolated_lower_bound``). Row i's term is

    1 + mean_{j != i+o} [S[i, i+o] - log(alpha e^(L[i, j]) + (1 - alpha) e^a)]
      - mean_{j != i+o} exp(S[i, j]) / (alpha e^(L[i, i+o]) + (1 - alpha) e^a),

  with ``L[i, j] = log mean_{k != j} exp(S[i, k])`` (for j != i+o it holds the positive and
  B - 2 negatives; L[i, i+o] is the mean over the negatives). alpha = 0 is ``tuba_per_row``
  with log-baseline a (I_NWJ for a = 1); alpha = 1 is InfoNCE with B - 1 samples averaged over
  the left-out negative (at most log(B - 1)); in between I_alpha <= log((B - 1) / alpha) and its
  variance and bias lie between those of InfoNCE and NWJ (Poole et al., Sec. 2.4 and their Fig. 2).
  Note the direction: Poole et al.'s alpha weighs the InfoNCE baseline.

  Args:
    scores: float tensor [b, B].
    row_offset: column index of row 0's positive.
    alpha: a Python float in [0, 1].
    log_baseline: the constant log-baseline a (Poole et al. learn a(y); a scalar or [b] here).

  Returns:
    Tensor [b] whose mean over all B rows is I_alpha.
  """
  scores = tf.convert_to_tensor(scores)
  log_alpha, log_rest = _log_weights(float(alpha))
  log_k = _log_num_negatives(scores)
  a = _row_vector(log_baseline, scores) + log_rest
  is_pos = _positive_mask(scores, row_offset)
  positive = _positive_scores(scores, row_offset)
  # Marginal term: the baseline of row i holds its positive out (mean over the negatives).
  log_mean_neg = _log_sum_exp_negatives(scores, row_offset) - log_k
  marginal_baseline = _log_add_exp(log_alpha + log_mean_neg, a)
  marginal = tf.exp(log_mean_neg - marginal_baseline)
  # Joint term: for each negative j held out, the baseline of the positive and B - 2 others.
  joint_baseline = _log_add_exp(log_alpha + _log_sum_exp_leave_one_out(scores) - log_k,
                                a[:, None])
  joint = tf.where(is_pos, tf.zeros_like(scores), positive[:, None] - joint_baseline)
  return 1.0 + tf.reduce_sum(joint, axis=1) / tf.exp(log_k) - marginal


def _with_objective_gradient(estimate, objective):
  """Value of ``estimate``, gradient of ``objective`` (Poole et al.'s stop-gradient form).

  ``stop_gradient(estimate) + (objective - stop_gradient(objective))``: the second term is
  exactly 0 for a finite objective, so the value is the estimate bit for bit.
  """
  return tf.stop_gradient(estimate) + (objective - tf.stop_gradient(objective))


def _identity(tensor):
  return tensor


def _not_a_row_mean(name):
  def per_row(scores, row_offset=0):
    raise ValueError(
        f'Estimator {name!r} is not a mean of per-row terms: its global value needs '
        f'Estimator.global_value(scores, row_offset, gather) with a cross-replica gather '
        f'(mi_tf.distribute.cross_replica_concat).')
  return per_row


@dataclasses.dataclass(frozen=True)
class Estimator:
  """One MI estimator as the rest of the project sees it.

  name: the name in gin files and run metadata (``MIMaximization.estimator = 'infonce'``).
  metric: the prefix of its logged values (``I_NCE/test``, ``I_NCE/train``, ``I_NCE/eval``).
  per_row: ``fn(scores [b, B], row_offset) -> [b]``, whose mean over the B rows of the global
    batch is the estimate (the form above; the training loss and every evaluation use it).
    Where the training objective differs (``objective_per_row``), these terms have the
    estimate's value and the objective's gradient. For an estimator given by ``statistics``
    it raises a ValueError (it is no mean of rows).
  statistics, combine: for an estimate that is a function of cross-replica reductions (I_DV,
    I_SMILE): ``statistics(scores [b, B], row_offset) -> {name: [b]}`` per-row quantities and
    ``combine({name: [B]}) -> scalar`` of those of ALL rows of the global batch. None for a
    mean of per-row terms.
  objective_per_row: None when the critic is trained with the estimate itself; else the
    per-row terms of the training objective (I_JS, I_SMILE: the JS objective), whose global
    mean gives the gradient while the reported value stays the estimate.
  """
  name: str
  metric: str
  per_row: Callable
  statistics: Optional[Callable] = None
  combine: Optional[Callable] = None
  objective_per_row: Optional[Callable] = None

  @property
  def is_row_mean(self):
    """Whether the estimate is the mean of ``per_row`` over the global batch's rows."""
    return self.statistics is None

  def global_value(self, scores, row_offset=0, gather=None):
    """The global-batch estimate from one replica's rows; the same on every replica.

    Args:
      scores: [b, B], this replica's rows against the negatives of ALL replicas.
      row_offset: column of row 0's positive (``mi_tf.distribute.replica_row_offset``).
      gather: ``fn([b]) -> [B]`` concatenating a per-row tensor over replicas in replica
        order, differentiably (``mi_tf.distribute.cross_replica_concat``); None on one device.

    Returns:
      Scalar tensor: the estimate's value, with the training objective's gradient.
    """
    gather = gather or _identity
    if self.is_row_mean:
      return tf.reduce_mean(gather(self.per_row(scores, row_offset)))
    stats = {k: gather(v) for k, v in self.statistics(scores, row_offset).items()}
    estimate = self.combine(stats)
    if self.objective_per_row is None:
      return estimate
    objective = tf.reduce_mean(gather(self.objective_per_row(scores, row_offset)))
    return _with_objective_gradient(estimate, objective)

  def value(self, scores):
    """The estimate of a square score matrix [B, B] (positives on the diagonal); a scalar."""
    if self.is_row_mean:
      return tf.reduce_mean(self.per_row(scores))
    return self.global_value(scores)


# THE registry of estimators: name -> Estimator. Training objectives, evaluations (which log
# every registered estimator), the known-MI validation and the staircase all look estimators
# up here, so adding one is a per-row function and one ``register`` call.
REGISTRY = {}


def register(name, metric, per_row=None, *, statistics=None, combine=None,
             objective_per_row=None):
  """Adds an estimator under ``name`` (gin) with logged prefix ``metric``; returns it.

  Give either ``per_row`` (a mean of per-row terms) or ``statistics`` and ``combine`` (see
  ``Estimator``); ``objective_per_row`` sets a training objective other than the estimate.
  """
  if name in REGISTRY:
    raise ValueError(f'Estimator {name!r} is already registered.')
  if any(e.metric == metric for e in REGISTRY.values()):
    raise ValueError(f'Metric name {metric!r} is already used by another estimator.')
  if (per_row is None) == (statistics is None) or (statistics is None) != (combine is None):
    raise ValueError(f'Estimator {name!r} needs either per_row or statistics and combine.')
  if statistics is not None:
    per_row = _not_a_row_mean(name)
  elif objective_per_row is not None:
    estimate_per_row = per_row

    def per_row(scores, row_offset=0):
      scores = tf.convert_to_tensor(scores)
      return _with_objective_gradient(estimate_per_row(scores, row_offset),
                                      objective_per_row(scores, row_offset))
  REGISTRY[name] = Estimator(name, metric, per_row, statistics, combine, objective_per_row)
  return REGISTRY[name]


# Parametrised names: '<family>_<number>' (e.g. 'smile_1', 'alpha_0.1', 'tuba_-0.5') is
# registered when first looked up, so that a run training it also logs it under its own metric
# ('I_SMILE_1'); the bare family name is its default parameter.
_FAMILIES = {
    # family: (metric prefix, parameter, default, check of the parameter, the rule in words).
    'smile': ('I_SMILE', 'tau', 5.0, lambda tau: tau > 0, 'tau > 0; inf is I_DV'),
    'alpha': ('I_ALPHA', 'alpha', 0.5, lambda a: 0.0 <= a <= 1.0, '0 <= alpha <= 1'),
    'tuba': ('I_TUBA', 'log_baseline', 0.0, math.isfinite, 'a finite log-baseline'),
}


def _register_family(family, name, metric, p):
  if family == 'smile':
    return register(name, metric, statistics=lambda s, o=0: smile_statistics(s, o, tau=p),
                    combine=dv_combine, objective_per_row=js_objective_per_row)
  if family == 'alpha':
    return register(name, metric, lambda s, o=0: alpha_per_row(s, o, alpha=p))
  return register(name, metric, lambda s, o=0: tuba_per_row(s, o, log_baseline=p))


def _family_estimator(name):
  family, _, text = name.partition('_')
  metric, param, default, ok, rule = _FAMILIES[family]
  try:
    p = float(text)
  except ValueError:
    raise ValueError(f'Bad estimator name {name!r}: {family}_<{param}> takes a number '
                     f'({rule}).') from None
  if not ok(p):
    raise ValueError(f'Bad estimator name {name!r}: {param} = {p:g}, needs {rule}.')
  if p == default:
    return REGISTRY[family]
  canonical = f'{family}_{p:g}'
  if canonical not in REGISTRY:
    _register_family(family, canonical, f'{metric}_{p:g}', p)
  return REGISTRY[canonical]


def get(name):
  """The registered Estimator called ``name``; a ValueError names the choices.

  A parametrised name ``smile_<tau>``, ``alpha_<alpha>`` or ``tuba_<log_baseline>`` is
  registered on first use (see ``_FAMILIES``).
  """
  if name in REGISTRY:
    return REGISTRY[name]
  if isinstance(name, str) and name.partition('_')[0] in _FAMILIES and '_' in name:
    return _family_estimator(name)
  patterns = ', '.join(f'{f}_<{v[1]}> ({v[4]})' for f, v in _FAMILIES.items())
  raise ValueError(f'Unknown estimator {name!r}; choose one of {sorted(REGISTRY)} or a '
                   f'parametrised one: {patterns}.')


register('infonce', 'I_NCE', infonce_per_row)
register('nwj', 'I_NWJ', nwj_per_row)
register('dv', 'I_DV', statistics=dv_statistics, combine=dv_combine)
register('js', 'I_JS', js_estimate_per_row, objective_per_row=js_objective_per_row)
_register_family('tuba', 'tuba', 'I_TUBA', _FAMILIES['tuba'][2])
_register_family('smile', 'smile', 'I_SMILE', _FAMILIES['smile'][2])
_register_family('alpha', 'alpha', 'I_ALPHA', _FAMILIES['alpha'][2])
