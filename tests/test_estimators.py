"""Known answers for I_NCE and I_NWJ (mi_tf.estimators), and agreement with tfp.vi."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from mi_tf import estimators

B = 16


def _random_scores(seed, b=B, scale=3.0):
  return tf.constant(np.random.default_rng(seed).normal(0, scale, (b, b)), tf.float32)


@pytest.mark.parametrize('seed', range(5))
def test_infonce_never_above_log_b(seed):
  scores = _random_scores(seed, scale=10.0) + 50.0 * tf.eye(B)
  assert float(estimators.infonce(scores)) <= math.log(B) + 1e-6


def test_constant_scores():
  scores = tf.fill((B, B), 3.7)
  assert float(estimators.infonce(scores)) == pytest.approx(0.0, abs=1e-6)
  # NWJ with S = c everywhere: c - e^(c - 1); at c = 0 that is -1/e.
  assert float(estimators.nwj(tf.zeros((B, B)))) == pytest.approx(-1 / math.e, abs=1e-6)
  assert float(estimators.nwj(scores)) == pytest.approx(3.7 - math.exp(2.7), rel=1e-5)


def test_huge_diagonal_gives_log_b():
  scores = 100.0 * tf.eye(B)  # Off-diagonal softmax mass 15 e^-100: far below float32 eps.
  assert float(estimators.infonce(scores)) == pytest.approx(math.log(B), abs=1e-5)


@pytest.mark.parametrize('seed', range(3))
def test_agree_with_tfp(seed):
  scores = _random_scores(seed)
  mi = tfp.vi.mutual_information
  # tfp's logu[i, j] = f(x_i, y_j) with positives on the diagonal, like ours.
  assert float(estimators.infonce(scores)) == pytest.approx(
      float(mi.lower_bound_info_nce(scores)), abs=1e-5)
  # tfp's NWJ is the TUBA bound of logu - 1 (as the paper's Colab writes it).
  assert float(estimators.nwj(scores)) == pytest.approx(
      float(mi.lower_bound_nguyen_wainwright_jordan(scores)), abs=1e-5)


def test_row_blocks_sum_to_the_square_estimator():
  """Replica blocks [b, B] with offsets give the global-batch estimator (distributed form)."""
  scores = _random_scores(7)
  for per_row, full in ((estimators.infonce_per_row, estimators.infonce),
                        (estimators.nwj_per_row, estimators.nwj)):
    parts = [per_row(scores[r * 4:(r + 1) * 4], row_offset=r * 4) for r in range(B // 4)]
    assert float(tf.reduce_mean(tf.concat(parts, 0))) == pytest.approx(
        float(full(scores)), abs=1e-6)


def test_nwj_large_scores_do_not_overflow_on_the_diagonal():
  scores = 200.0 * tf.eye(B)  # exp(200) overflows float32; only negatives are exponentiated.
  assert float(estimators.nwj(scores)) == pytest.approx(200.0 - math.exp(-1), rel=1e-6)


def test_unknown_estimator_name():
  with pytest.raises(ValueError, match='Unknown estimator'):
    estimators.get('jsd')
