"""The family of MI lower bounds beyond the paper's two (mi_tf.estimators): I_DV (MINE), I_JS,
I_TUBA, I_SMILE and Poole et al.'s I_alpha.

(a) each against its written-out definition in NumPy (float64, large scores included); (b)
against tfp.vi.mutual_information where tfp has the quantity; (c) the row-block form (two
blocks with ``row_offset``) and two MirroredStrategy replicas on logical CPUs give the
one-device value (and gradient); (d) known-MI behaviour of the analytic optimal critic on
correlated Gaussians (``mi_tf.validation``), as inequalities on measured values with
tolerances of 3 standard errors (200 batches of 128 pairs, d = 20).
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from conftest import REPO
from mi_tf import estimators
from mi_tf import validation

B = 16
NEW = ('dv', 'js', 'tuba', 'smile', 'alpha')
MI_TF = tfp.vi.mutual_information


def _scores(seed, scale=3.0, diagonal=0.0, b=B):
  rng = np.random.default_rng(seed)
  return rng.normal(0.0, scale, (b, b)) + diagonal * np.eye(b)


# Random matrices: moderate, large off-diagonal spread, and a dominant diagonal.
MATRICES = [(0, 3.0, 0.0), (1, 30.0, 0.0), (2, 10.0, 60.0), (3, 1.0, -5.0)]


@pytest.fixture
def clean_registry():
  """Removes the parametrised estimators a test registers (other tests see the defaults)."""
  before = set(estimators.REGISTRY)
  yield
  for name in set(estimators.REGISTRY) - before:
    del estimators.REGISTRY[name]


# ---------------------------------------------------------------------------------------
# (a) The written-out definitions, in NumPy.


def _lse(a):
  a = np.asarray(a, np.float64).ravel()
  m = np.max(a)
  return m + math.log(np.sum(np.exp(a - m)))


def _off(s):
  return s[~np.eye(len(s), dtype=bool)]


def np_dv(s, tau=None):
  """mean_i S_ii - log mean_{i != j} exp(clip(S_ij, -tau, tau))."""
  neg = _off(s) if tau is None else np.clip(_off(s), -tau, tau)
  return np.mean(np.diag(s)) - (_lse(neg) - math.log(neg.size))


def np_js_objective(s):
  """E_p[-softplus(-S)] - E_q[softplus(S)] (f-GAN JS)."""
  return np.mean(-np.logaddexp(0.0, -np.diag(s))) - np.mean(np.logaddexp(0.0, _off(s)))


def np_tuba(s, a):
  """1 + mean_i (S_ii - a_i) - mean_i mean_{j != i} exp(S_ij - a_i); a scalar or per row."""
  b = len(s)
  a = np.broadcast_to(np.asarray(a, np.float64), (b,))
  marg = [np.mean(np.exp(np.delete(s[i], i) - a[i])) for i in range(b)]
  return 1.0 + np.mean(np.diag(s) - a) - np.mean(marg)


def np_alpha(s, alpha, a=1.0):
  """Poole et al. Eq. 13 as their interpolated_lower_bound computes it, written out."""
  b = len(s)
  with np.errstate(divide='ignore'):
    log_alpha, log_rest = np.log(alpha), np.log1p(-alpha)
  loo = np.array([[_lse(np.delete(s[i], j)) - math.log(b - 1) for j in range(b)]
                  for i in range(b)])
  base = np.logaddexp(log_alpha + loo, log_rest + a)
  marg = np.mean([np.exp(s[i, j] - base[i, i]) for i in range(b) for j in range(b) if i != j])
  joint = np.mean([s[i, i] - base[i, j] for i in range(b) for j in range(b) if i != j])
  return 1.0 + joint - marg


@pytest.mark.parametrize('seed,scale,diagonal', MATRICES)
def test_each_estimator_is_its_written_out_definition(seed, scale, diagonal):
  s = _scores(seed, scale, diagonal)
  t = tf.constant(s, tf.float64)
  expected = {
      'dv': np_dv(s), 'smile': np_dv(s, tau=5.0), 'smile_1': np_dv(s, tau=1.0),
      'js': np_tuba(s, 0.0), 'js_objective': np_js_objective(s),
      'tuba': np_tuba(s, 0.0), 'tuba_1.3': np_tuba(s, 1.3),
      'tuba_rows': np_tuba(s, np.linspace(-2, 2, B)),
      'alpha': np_alpha(s, 0.5), 'alpha_0.2': np_alpha(s, 0.2, a=-0.7),
      'alpha_0': np_alpha(s, 0.0), 'alpha_1': np_alpha(s, 1.0)}
  got = {
      'dv': estimators.get('dv').value(t), 'smile': estimators.get('smile').value(t),
      'smile_1': estimators.smile(t, tau=1.0),
      'js': estimators.get('js').value(t),
      'js_objective': tf.reduce_mean(estimators.js_objective_per_row(t)),
      'tuba': estimators.get('tuba').value(t),
      'tuba_1.3': tf.reduce_mean(estimators.tuba_per_row(t, log_baseline=1.3)),
      'tuba_rows': tf.reduce_mean(estimators.tuba_per_row(t, log_baseline=np.linspace(-2, 2, B))),
      'alpha': estimators.get('alpha').value(t),
      'alpha_0.2': tf.reduce_mean(estimators.alpha_per_row(t, alpha=0.2, log_baseline=-0.7)),
      'alpha_0': tf.reduce_mean(estimators.alpha_per_row(t, alpha=0.0)),
      'alpha_1': tf.reduce_mean(estimators.alpha_per_row(t, alpha=1.0))}
  for key, value in expected.items():
    # exp(S) of scale-30 scores reaches 1e30: TUBA-type values are compared relatively there.
    assert float(got[key]) == pytest.approx(value, rel=1e-5, abs=1e-5), key
  assert float(estimators.smile(t, tau=math.inf)) == pytest.approx(np_dv(s), abs=1e-9)


def test_float32_is_stable_at_large_scores():
  """Log-domain bounds stay finite and accurate in float32 where exp(S) overflows it."""
  s = _scores(4, scale=60.0, diagonal=100.0)  # exp(200) overflows float32.
  t = tf.constant(s, tf.float32)
  for name, expected in (('dv', np_dv(s)), ('smile', np_dv(s, tau=5.0)),
                         ('alpha', np_alpha(s, 0.5))):
    assert float(estimators.get(name).value(t)) == pytest.approx(expected, rel=1e-5), name
  assert float(tf.reduce_mean(estimators.js_objective_per_row(t))) == pytest.approx(
      np_js_objective(s), rel=1e-5)


def test_tuba_with_baseline_one_is_nwj_and_alpha_ends_are_tuba_and_infonce():
  s = tf.constant(_scores(5), tf.float64)
  np.testing.assert_allclose(estimators.tuba_per_row(s, log_baseline=1.0),
                             estimators.nwj_per_row(s), rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(estimators.alpha_per_row(s, alpha=0.0, log_baseline=1.0),
                             estimators.nwj_per_row(s), rtol=1e-12, atol=1e-12)
  # alpha = 1: InfoNCE with B - 1 samples, never above log(B - 1).
  big = s + 40.0 * tf.eye(B, dtype=tf.float64)
  assert float(tf.reduce_mean(estimators.alpha_per_row(big, alpha=1.0))) == pytest.approx(
      math.log(B - 1), abs=1e-9)


# ---------------------------------------------------------------------------------------
# (b) tfp.vi.mutual_information.


@pytest.mark.parametrize('seed,scale,diagonal', MATRICES[:1] + MATRICES[2:])
def test_agree_with_tfp(seed, scale, diagonal, clean_registry):
  s = _scores(seed, scale, diagonal)
  t = tf.constant(s, tf.float64)

  def _check(got, want, what):
    assert float(got) == pytest.approx(float(want), rel=1e-6, abs=1e-6), what
  # tfp's lower_bound_jensen_shannon is the f-GAN JS objective (no log 4): the TRAINING
  # objective of I_JS, not its estimate; the estimate is tfp's NWJ of the scores + 1.
  _check(tf.reduce_mean(estimators.js_objective_per_row(t)),
         MI_TF.lower_bound_jensen_shannon(t), 'js objective')
  _check(estimators.get('js').value(t), MI_TF.lower_bound_nguyen_wainwright_jordan(t + 1.0),
         'js estimate')
  # TUBA with log-baseline a is tfp's NWJ (itself TUBA of logu - 1) of the scores - a + 1.
  for a in (0.0, 1.0, -2.5):
    _check(tf.reduce_mean(estimators.tuba_per_row(t, log_baseline=a)),
           MI_TF.lower_bound_nguyen_wainwright_jordan(t - a + 1.0), f'tuba a={a}')
  # I_DV = TUBA at its best constant baseline a* = log mean_{i != j} exp(S_ij); I_SMILE the
  # same of the matrix whose negatives are clipped (tfp has neither).
  a_star = _lse(_off(s)) - math.log(B * (B - 1))
  _check(estimators.dv(t), MI_TF.lower_bound_nguyen_wainwright_jordan(t - a_star + 1.0), 'dv')
  clipped = np.where(np.eye(B, dtype=bool), s, np.clip(s, -5.0, 5.0))
  a_clip = _lse(_off(clipped)) - math.log(B * (B - 1))
  _check(estimators.smile(t), MI_TF.lower_bound_nguyen_wainwright_jordan(
      tf.constant(clipped - a_clip + 1.0)), 'smile')
  # I_alpha at alpha = 0 (log-baseline 1) is tfp's NWJ; at alpha = 1 the mean over the
  # left-out column j of tfp's InfoNCE of the [B-1, B-1] matrix without row and column j.
  _check(estimators.get('alpha_0').value(t), MI_TF.lower_bound_nguyen_wainwright_jordan(t),
         'alpha 0')
  minors = np.stack([np.delete(np.delete(s, j, 0), j, 1) for j in range(B)])
  _check(tf.reduce_mean(estimators.alpha_per_row(t, alpha=1.0)),
         tf.reduce_mean(MI_TF.lower_bound_info_nce(tf.constant(minors))), 'alpha 1')


# ---------------------------------------------------------------------------------------
# Registry: names, parametrised names, objective versus estimate.


def test_the_family_is_registered_in_the_paper_vocabulary():
  metrics = {n: e.metric for n, e in estimators.REGISTRY.items()}
  assert {n: metrics[n] for n in NEW} == {'dv': 'I_DV', 'js': 'I_JS', 'tuba': 'I_TUBA',
                                          'smile': 'I_SMILE', 'alpha': 'I_ALPHA'}
  assert not estimators.get('dv').is_row_mean and not estimators.get('smile').is_row_mean
  assert all(estimators.get(n).is_row_mean for n in ('infonce', 'nwj', 'js', 'tuba', 'alpha'))
  with pytest.raises(ValueError, match='not a mean of per-row terms'):
    estimators.get('dv').per_row(tf.zeros((4, 4)))


def test_parametrised_names(clean_registry):
  s = tf.constant(_scores(6), tf.float64)
  assert estimators.get('smile_5') is estimators.get('smile')
  assert estimators.get('alpha_0.5') is estimators.get('alpha')
  assert estimators.get('tuba_0') is estimators.get('tuba')
  one = estimators.get('smile_1.0')
  assert (one.name, one.metric) == ('smile_1', 'I_SMILE_1')
  assert estimators.get('smile_1') is one and 'smile_1' in estimators.REGISTRY
  assert float(one.value(s)) == pytest.approx(np_dv(s.numpy(), tau=1.0), abs=1e-9)
  assert estimators.get('alpha_0.1').metric == 'I_ALPHA_0.1'
  assert float(estimators.get('smile_inf').value(s)) == pytest.approx(float(estimators.dv(s)))
  for bad, message in (('smile_x', 'takes a number'), ('smile_-1', 'tau > 0'),
                       ('alpha_1.5', '0 <= alpha <= 1'), ('tuba_nan', 'finite'),
                       ('mine', 'Unknown estimator'), ('smile', None)):
    if message is None:
      estimators.get(bad)
      continue
    with pytest.raises(ValueError, match=message):
      estimators.get(bad)


def test_js_and_smile_report_the_estimate_and_train_the_js_objective():
  s = tf.constant(_scores(7), tf.float64)

  def value_and_grad(fn):
    with tf.GradientTape() as tape:
      tape.watch(s)
      v = fn(s)
    return float(v), tape.gradient(v, s).numpy()

  js_obj = lambda t: tf.reduce_mean(estimators.js_objective_per_row(t))  # noqa: E731
  v_obj, g_obj = value_and_grad(js_obj)
  for name, estimate in (('js', np_tuba(s.numpy(), 0.0)), ('smile', np_dv(s.numpy(), 5.0))):
    v, g = value_and_grad(estimators.get(name).value)
    assert v == pytest.approx(estimate, abs=1e-9) and abs(v - v_obj) > 0.05, name
    np.testing.assert_allclose(g, g_obj, rtol=1e-12, atol=1e-15, err_msg=name)
  # DV and I_alpha train with themselves: their gradient is not the JS one.
  for name in ('dv', 'alpha', 'tuba'):
    _, g = value_and_grad(estimators.get(name).value)
    assert np.max(np.abs(g - g_obj)) > 1e-3, name


# ---------------------------------------------------------------------------------------
# (c) Row blocks and replicas.


def _blocked(estimator, scores, num_blocks):
  """The estimator from row blocks [b, B] with their offsets, combined as replicas would."""
  b = scores.shape[0] // num_blocks
  blocks = [(scores[r * b:(r + 1) * b], r * b) for r in range(num_blocks)]
  if estimator.is_row_mean:
    return tf.reduce_mean(tf.concat([estimator.per_row(x, o) for x, o in blocks], 0))
  stats = [estimator.statistics(x, o) for x, o in blocks]
  return estimator.combine({k: tf.concat([st[k] for st in stats], 0) for k in stats[0]})


@pytest.mark.parametrize('name', NEW)
def test_two_row_blocks_give_the_one_device_value(name):
  for seed, scale, diagonal in MATRICES:
    t = tf.constant(_scores(seed, scale, diagonal), tf.float64)
    est = estimators.get(name)
    assert float(_blocked(est, t, 2)) == pytest.approx(float(est.value(t)), rel=1e-5,
                                                       abs=1e-5), (name, seed)
  # float32 at moderate scores, and four blocks.
  t = tf.constant(_scores(8), tf.float32)
  assert float(_blocked(est, t, 4)) == pytest.approx(float(est.value(t)), abs=1e-5)


_MIRRORED_SCRIPT = r'''
import json
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from mi_tf import critics, data, distribute
from mi_tf.encoders import MLP
from mi_tf.tasks import mi_maximization
sys.path.insert(0, 'tests')
import replica_runs

GLOBAL_BATCH = 16
rng = np.random.default_rng(0)
X1 = tf.constant(rng.uniform(0, 1, (GLOBAL_BATCH, 14, 28, 1)), tf.float32)
X2 = tf.constant(np.clip(X1.numpy() + rng.normal(0, 0.1, X1.shape), 0, 1), tf.float32)


def one_and_two(estimator):
  """(one device, two replicas) loss, estimate(s) and summed gradient, same weights."""
  tf.keras.utils.set_random_seed(0)
  small = lambda name: MLP(hidden_units=(32,), output_dim=16, name=name)  # noqa: E731
  task = mi_maximization.MIMaximization(encoder=small, estimator=estimator,
                                        critic=critics.Bilinear,
                                        data=data.ImageHalves(train_split='train[:512]'))
  with mirrored.scope():
    task.build(GLOBAL_BATCH, seed=0)
  # One device: outside the scope and strategy.run the default context has one replica.
  with tf.GradientTape() as tape:
    loss_one, est_one = task.loss({'x1': X1, 'x2': X2})
  grads_one = tape.gradient(loss_one, task.variables)
  b = GLOBAL_BATCH // 2

  def rows(ctx):
    k = ctx.replica_id_in_sync_group
    return {'x1': X1[k * b:(k + 1) * b], 'x2': X2[k * b:(k + 1) * b]}

  loss, est, grads = replica_runs.loss_on_replicas(mirrored, task, rows)
  return {'loss_one': float(loss_one), 'loss_two': [float(v) for v in loss],
          'est_one': float(est_one), 'est_two': [float(v) for v in est],
          'max_grad_diff': max(float(np.max(np.abs(a.numpy() - c.numpy())))
                               for a, c in zip(grads_one, grads)),
          'max_grad': max(float(np.max(np.abs(a.numpy()))) for a in grads_one)}


mirrored = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
out = {'replicas': mirrored.num_replicas_in_sync}
for estimator in ('dv', 'smile', 'js'):
  out[estimator] = one_and_two(estimator)
print('RESULTS ' + json.dumps(out))
'''


@pytest.mark.e2e  # Several processes: the e2e tier (pytest.ini).
def test_two_mirrored_replicas_give_the_global_value_and_gradient():
  """MIMaximization.loss under MirroredStrategy (2 logical CPUs) equals one device: the
  estimate on every replica and the summed gradient."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-c', _MIRRORED_SCRIPT], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [x for x in proc.stdout.splitlines() if x.startswith('RESULTS ')][-1]
  out = json.loads(line[len('RESULTS '):])
  assert out['replicas'] == 2
  for estimator in ('dv', 'smile', 'js'):
    r = out[estimator]
    assert len(r['est_two']) == 2
    for value in r['est_two']:  # Both replicas hold the global estimate.
      assert value == pytest.approx(r['est_one'], abs=1e-5), estimator
    assert r['loss_two'][0] == pytest.approx(r['loss_one'], abs=1e-5), estimator
    assert r['max_grad_diff'] <= 1e-5, estimator
    assert r['max_grad'] > 1e-3, estimator  # Not a comparison of zeros.


# ---------------------------------------------------------------------------------------
# (d) Known MI: the analytic optimal critic log p(y|x)/p(y) on correlated Gaussians.

NUM_BATCHES = 200
BATCH = 128
Z = 3.0


def _per_batch_quantities(m):
  """Every quantity the tests below read, of one batch's optimal scores m = S [B, B]."""
  value = lambda name, t: estimators.get(name).value(t)  # noqa: E731
  tuba = lambda t, a: tf.reduce_mean(estimators.tuba_per_row(t, log_baseline=a))  # noqa: E731
  js_objective = lambda t: tf.reduce_mean(estimators.js_objective_per_row(t))  # noqa: E731
  out = {name: value(name, m) for name in ('infonce', 'dv', 'smile', 'js', 'tuba')}
  out.update({
      'nwj': estimators.nwj(m + 1.0), 'dv_of_nwj_critic': estimators.dv(m + 1.0),
      'alpha': value('alpha', m + 1.0), 'tuba_1': tuba(m + 1.0, 1.0),
      'tuba_-0.5': tuba(m, -0.5), 'tuba_0.5': tuba(m, 0.5),
      'nwj_unshifted': estimators.nwj(m)})
  out.update({f'js_objective_{c}': js_objective(m + c) for c in (-0.5, 0.0, 0.5)})
  return out


@tf.function
def _map(scores):
  signature = {k: scores.dtype for k in _per_batch_quantities(scores[0])}
  return tf.map_fn(_per_batch_quantities, scores, fn_output_signature=signature)


@pytest.fixture(scope='module')
def optimal():
  """{mi: {name: per-batch values [200]}} of the optimal critics S (and NWJ's 1 + S)."""
  rng = np.random.default_rng(0)
  out = {}
  for mi in (2, 8):
    x, y = validation.sample_correlated_gaussian(rng, NUM_BATCHES, BATCH, 20, mi)
    s = tf.constant(validation.optimal_scores(x, y, validation.rho_for_mi(mi, 20)))
    out[mi] = {k: v.numpy() for k, v in _map(s).items()}
  return out


def _se(values):
  return np.std(values, ddof=1) / math.sqrt(len(values))


def test_infonce_never_above_log_b(optimal):
  for mi in optimal:
    assert np.max(optimal[mi]['infonce']) <= math.log(BATCH) + 1e-12


def test_nwj_and_tuba_unbiased_at_mi_2(optimal):
  r = optimal[2]
  for name in ('nwj', 'tuba_1', 'tuba'):  # TUBA(a=1) of 1 + S; TUBA(a=0) of S.
    assert abs(np.mean(r[name]) - 2.0) < Z * _se(r[name]), (name, np.mean(r[name]))
  # E[TUBA(S, a)] = MI + 1 - a - e^-a (E_q[e^S] = 1): a = 0 is the best constant baseline.
  for a in (-0.5, 0.5):
    diff = r[f'tuba_{a}'] - r['tuba']
    assert abs(np.mean(diff) - (-a - math.exp(-a) + 1.0)) < Z * _se(diff), a
    assert np.mean(diff) + Z * _se(diff) < 0.0


def test_dv_is_above_nwj_on_the_same_critic(optimal):
  for mi in optimal:  # log z <= z / e: batch by batch, not only on average.
    assert np.all(optimal[mi]['dv_of_nwj_critic'] >= optimal[mi]['nwj'] - 1e-9)
    np.testing.assert_allclose(optimal[mi]['dv_of_nwj_critic'], optimal[mi]['dv'], atol=1e-9)


def test_js_convention_the_log_ratio_maximises_js_and_nwj_needs_the_shift(optimal):
  r = optimal[2]
  for c in (-0.5, 0.5):  # The JS objective's optimum is the log density ratio itself ...
    diff = r['js_objective_0.0'] - r[f'js_objective_{c}']
    assert np.mean(diff) > Z * _se(diff), c
  # ... so I_JS = NWJ(S + 1) is unbiased there, while NWJ(S) (no shift) is 1/e too low.
  assert abs(np.mean(r['js']) - 2.0) < Z * _se(r['js'])
  gap = r['js'] - r['nwj_unshifted']
  assert abs(np.mean(gap) - 1.0 / math.e) < Z * _se(gap)


def test_smile_has_lower_variance_than_dv_at_mi_8(optimal):
  r = optimal[8]
  assert np.std(r['smile']) < 0.7 * np.std(r['dv']), (np.std(r['smile']), np.std(r['dv']))
  # At tau = 5 the clipping biases SMILE upwards here (the density ratio exceeds e^5).
  assert np.mean(r['smile']) > np.mean(r['dv'])


def test_alpha_lies_between_infonce_and_nwj(optimal):
  r = optimal[8]
  nce, alpha, nwj = r['infonce'], r['alpha'], r['nwj']
  # Bias: I_NCE saturates near log B = 4.85; I_alpha(0.5) is above it and below the MI that
  # the unbiased NWJ reaches on average.
  assert np.mean(nce) + Z * _se(nce) < np.mean(alpha) - Z * _se(alpha)
  assert np.mean(alpha) + Z * _se(alpha) < 8.0
  # Hard bound: the joint term is at most log((B - 1) / alpha), the marginal term >= 0.
  assert np.max(alpha) <= 1.0 + math.log((BATCH - 1) / 0.5)
  # Variance: between the two (SDs measured: 0.07, 0.13 and several nats).
  assert 1.2 * np.std(nce) < np.std(alpha) < 0.2 * np.std(nwj)
