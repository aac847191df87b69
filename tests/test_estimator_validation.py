"""Known-answer test of the estimators against a ground-truth MI (beyond the paper).

Correlated Gaussians of dimension 20 whose MI is 2, 4, 6, 8, 10 nats, the analytic optimal
critic (``mi_tf.validation``), batch 128, 2,000 batches, evaluated with the project's own
``mi_tf.estimators.infonce`` and ``nwj`` in float64. Tolerances follow from standard errors:

- I_NCE: per-batch SD 0.15 (MI 2) to 0.04 (MI 10), so the mean of 2,000 batches has a standard
  error of 0.003 to 0.001. The reference values (measured once, on another draw, rounded to
  0.01) are compared within 5 standard errors of the DIFFERENCE of two such means plus the
  rounding. Every single batch must be <= log B (a hard bound), and the mean must stay below
  the true MI (a lower bound).
- I_NWJ with its optimal critic 1 + log p(y|x)/p(y) is unbiased: E[I_NWJ] = MI exactly. At MI
  2 and 4 the per-batch values are light-tailed enough (SD 0.18, 0.33) for a 5-standard-error
  test of the mean against the TRUE MI. At MI >= 6 the term e^-1 mean exp(critic) off the
  diagonal is a heavy-tailed importance-sampling average (its variance grows like e^(2 MI)), so
  the sample mean and SD are not trustworthy at 2,000 batches. There we test (a) the
  light-tailed positive ("joint") term, whose expectation is MI + 1 exactly, within 5 standard
  errors, and (b) the MEDIAN of the per-batch values with a distribution-free confidence
  interval (order statistics n/2 -+ 4 sqrt(n)/2, a binomial 4-sigma interval that holds for
  any distribution) around a reference median measured on 20,000 batches (seeds 100-109).
"""

import math

import numpy as np
import pytest

from mi_tf import validation

MIS = (2, 4, 6, 8, 10)
BATCH = 128
NUM_BATCHES = 2000
REFERENCE_INFONCE = {2: 1.89, 4: 3.34, 6: 4.21, 8: 4.63, 10: 4.78}
REFERENCE_NWJ_MEDIAN = {6: 6.117, 8: 8.297, 10: 10.524}  # 20,000 batches, seeds 100-109.
Z = 5.0


@pytest.fixture(scope='module')
def estimates():
  return {mi: validation.optimal_critic_estimates(mi, NUM_BATCHES, BATCH, dim=20, seed=0)
          for mi in MIS}


def _se(values):
  return np.std(values, ddof=1) / math.sqrt(len(values))


def test_rho_inverts_the_mi_formula():
  for mi in MIS:
    rho = validation.rho_for_mi(mi, 20)
    assert 0 < rho < 1
    assert validation.mi_for_rho(rho, 20) == pytest.approx(mi, rel=1e-12)


def test_sampler_has_the_intended_correlation():
  rng = np.random.default_rng(1)
  x, y = validation.sample_correlated_gaussian(rng, 1, 50_000, 20, mi=4.0)
  rho = validation.rho_for_mi(4.0, 20)
  corr = [np.corrcoef(x[0, :, k], y[0, :, k])[0, 1] for k in range(20)]
  np.testing.assert_allclose(corr, rho, atol=0.015)  # SE of a correlation ~ (1-rho^2)/sqrt(n).
  np.testing.assert_allclose(y[0].var(axis=0), 1.0, atol=0.04)


def test_optimal_scores_are_the_log_density_ratio():
  rng = np.random.default_rng(2)
  rho = 0.6
  x, y = validation.sample_correlated_gaussian(rng, 1, 5, 3, validation.mi_for_rho(rho, 3))
  s = validation.optimal_scores(x, y, rho)[0]
  def log_normal(v, mean, var):
    return np.sum(-0.5 * np.log(2 * np.pi * var) - (v - mean) ** 2 / (2 * var))
  for i in range(5):
    for j in range(5):
      direct = (log_normal(y[0, j], rho * x[0, i], 1 - rho**2)
                - log_normal(y[0, j], 0.0, 1.0))
      assert s[i, j] == pytest.approx(direct, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize('mi', MIS)
def test_infonce_matches_theory(estimates, mi):
  nce = estimates[mi]['infonce']
  log_b = math.log(BATCH)
  assert np.max(nce) <= log_b + 1e-12           # Never above log B, batch by batch.
  se = _se(nce)
  assert se < 0.004
  assert np.mean(nce) + Z * se < min(mi, log_b)  # A lower bound on MI (and on log B).
  tolerance = Z * math.sqrt(2.0) * se + 0.005     # Two draws' means, reference rounded to 0.01.
  assert abs(np.mean(nce) - REFERENCE_INFONCE[mi]) < tolerance, (np.mean(nce), tolerance)


@pytest.mark.parametrize('mi', [2, 4])
def test_nwj_is_unbiased_at_low_mi(estimates, mi):
  nwj = estimates[mi]['nwj']
  se = _se(nwj)
  assert se < 0.02
  assert abs(np.mean(nwj) - mi) < Z * se, (np.mean(nwj), se)
  # The negative term has expectation exactly 1 (E over p(x)p(y) of p(y|x)/p(y)).
  marginal = estimates[mi]['marginal_term']
  assert abs(np.mean(marginal) - 1.0) < Z * _se(marginal)


@pytest.mark.parametrize('mi', MIS)
def test_nwj_positive_term_is_mi_plus_one(estimates, mi):
  joint = estimates[mi]['joint_term']
  assert abs(np.mean(joint) - (mi + 1.0)) < Z * _se(joint)
  # I_NWJ (the project's estimator) = joint term - marginal term, batch by batch.
  np.testing.assert_allclose(estimates[mi]['nwj'],
                             joint - estimates[mi]['marginal_term'], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize('mi', [6, 8, 10])
def test_nwj_median_at_high_mi(estimates, mi):
  nwj = np.sort(estimates[mi]['nwj'])
  n = len(nwj)
  half_width = int(math.ceil(4.0 * math.sqrt(n) / 2.0))
  low, high = nwj[n // 2 - half_width], nwj[n // 2 + half_width]
  assert low <= REFERENCE_NWJ_MEDIAN[mi] <= high, (low, REFERENCE_NWJ_MEDIAN[mi], high)
  # The median sits ABOVE the MI: most batches miss the rare large exp(critic) terms that
  # make the negative term's mean 1 (its median is below 1).
  assert np.median(estimates[mi]['marginal_term']) < 1.0
  assert np.median(nwj) > mi


def test_nwj_spread_grows_with_mi_while_infonce_saturates(estimates):
  iqr = [np.subtract(*np.percentile(estimates[mi]['nwj'], [75, 25])) for mi in MIS]
  assert all(a < b for a, b in zip(iqr, iqr[1:])), iqr
  sd_nce = [np.std(estimates[mi]['infonce']) for mi in MIS]
  assert sd_nce[-1] < sd_nce[0]  # I_NCE piles up under log B = 4.85.
  assert np.mean(estimates[10]['infonce']) > math.log(BATCH) - 0.1


def test_learned_critic_staircase_runs_and_infonce_stays_under_log_b():
  """The learned-critic staircase (scripts/plot_staircase.py plots it) on a very short schedule."""
  from mi_tf import staircase  # pylint: disable=g-import-not-at-top
  run = staircase.train_staircase('separable', 'infonce', mi_levels=(2, 6),
                                  steps_per_level=150, learning_rate=2e-3)
  assert run['estimate'].shape == run['true_mi'].shape == (300,)
  np.testing.assert_array_equal(run['true_mi'][:150], 2.0)
  assert np.all(run['estimate'] <= run['log_b'] + 1e-5)
  # Learning: the last steps estimate more than the first ones, and more than at MI 2.
  assert np.mean(run['estimate'][-50:]) > np.mean(run['estimate'][100:150]) > np.mean(
      run['estimate'][:10])
