"""The fast converged probe reaches the optimum of the paper's probe objective.

``probe.converged_probe`` (full-batch L-BFGS in one tf.function) against scikit-learn's
LogisticRegression fitted to convergence (lbfgs, tol 1e-10) on the same min-max-scaled features
and the same C: same objective value, same test predictions, on a small real-MNIST subset
(2x2-pooled top halves, 98 features, so that the scikit-learn reference converges in seconds).
"""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MinMaxScaler

from mi_tf import data as data_lib
from mi_tf import probe


def _pooled(split):
  x1, _, y = data_lib.eval_halves('mnist', split)
  x = x1[:, :, :, 0].reshape(len(x1), 7, 2, 14, 2).mean(axis=(2, 4)).reshape(len(x1), -1)
  return x, y


def _objective(x, y, weights, bias, C):
  """scikit-learn's objective divided by C N (the form converged_probe reports)."""
  z = x @ weights + bias
  z = z - z.max(axis=1, keepdims=True)
  ce = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]
  return ce.mean() + 0.5 / (C * len(y)) * np.sum(weights**2)


@pytest.fixture(scope='module')
def subset():
  x_tr, y_tr = _pooled('train[:1500]')
  x_te, y_te = _pooled('test[:1000]')
  return x_tr, y_tr, x_te, y_te


def test_converged_probe_matches_converged_sklearn(subset):
  x_tr, y_tr, x_te, y_te = subset
  C = 10.0
  ours = probe.converged_probe(x_tr, y_tr, x_te, y_te, C=C)
  assert ours['converged'] and ours['grad_max'] < 1e-6

  scaler = MinMaxScaler().fit(x_tr)
  s_tr, s_te = scaler.transform(x_tr), scaler.transform(x_te)
  ref = LogisticRegression(C=C, tol=1e-10, max_iter=20000).fit(s_tr, y_tr)
  ref_objective = _objective(s_tr, y_tr, ref.coef_.T, ref.intercept_, C)
  # The same strictly convex objective: ours is at least as low as the reference's.
  assert ours['objective'] <= ref_objective + 1e-7
  assert ours['objective'] == pytest.approx(ref_objective, abs=1e-5)
  assert abs(ours['test_accuracy'] - ref.score(s_te, y_te)) <= 0.002
  assert abs(ours['train_accuracy'] - ref.score(s_tr, y_tr)) <= 0.002


def test_default_probe_is_still_the_papers(subset):
  x_tr, y_tr, x_te, y_te = subset
  paper = probe.fit_probe(x_tr, y_tr, x_te, y_te)  # protocol='paper' is the default.
  direct = probe.linear_probe(x_tr, y_tr, x_te, y_te)
  assert (paper['test_accuracy'], paper['n_iter']) == (direct['test_accuracy'], direct['n_iter'])
  assert 'converged' not in paper
  with pytest.raises(ValueError, match='protocol'):
    probe.fit_probe(x_tr, y_tr, x_te, y_te, protocol='lbfgs')


def test_fast_protocol_stops_early_within_a_point_tenth_of_converged(subset):
  """'fast' = the same L-BFGS stopped at FAST_TOLERANCE: fewer iterations, its gradient below
  that tolerance, an objective above the converged one by little, the same accuracy (0.3 point
  on 1,000 test images: 3 images)."""
  x_tr, y_tr, x_te, y_te = subset
  full = probe.fit_probe(x_tr, y_tr, x_te, y_te, protocol='converged')
  fast = probe.fit_probe(x_tr, y_tr, x_te, y_te, protocol='fast')
  assert fast['grad_max'] < probe.FAST_TOLERANCE and fast['converged']
  assert fast['n_iter'] < full['n_iter']
  assert full['objective'] <= fast['objective'] <= full['objective'] * (1 + 1e-2)
  assert abs(fast['test_accuracy'] - full['test_accuracy']) <= 0.003


def test_converged_probe_on_features_of_several_widths_in_one_process(subset):
  """The cached L-BFGS graph is reused across feature widths (pixels, then codes of another
  size; with reduce_retracing the third width traces with an unknown shape)."""
  x_tr, y_tr, x_te, y_te = subset
  for width in (98, 40, 70, 98):
    result = probe.converged_probe(x_tr[:, :width], y_tr, x_te[:, :width], y_te, tolerance=1e-4)
    assert result['feature_dim'] == width and result['converged']
