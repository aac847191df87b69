"""I_TUBA with a learned scalar log-baseline (Poole et al. 2019, Sec. 2.2) in MIMaximization:
the variable is built, trained, checkpointed and evaluated, its gradient is d/da of the TUBA
formula, and two MirroredStrategy replicas give the one-device value and gradient. Also
MINE's moving-average gradient of I_DV (MIMaximization.dv_moving_average)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from conftest import TINY_BINDINGS
from mi_tf import critics
from mi_tf import data as data_lib
from mi_tf import launch
from mi_tf import metrics_log
from mi_tf.encoders import MLP
from mi_tf.tasks import mi_maximization

BATCH = 16


def _task(estimator='tuba', learned_baseline=True, **kwargs):
  small = lambda name: MLP(hidden_units=(32,), output_dim=8, name=name)  # noqa: E731
  task = mi_maximization.MIMaximization(encoder=small, critic=critics.Bilinear,
                                        estimator=estimator, learning_rate=1e-3,
                                        learned_baseline=learned_baseline, **kwargs)
  tf.keras.utils.set_random_seed(0)
  task.build(BATCH, seed=0)
  return task


def _batch(n=BATCH, seed=0):
  """Random image halves with correlated views (no dataset read)."""
  rng = np.random.default_rng(seed)
  x1 = rng.uniform(0, 1, (n, 14, 28, 1))
  x2 = np.clip(x1 + rng.normal(0, 0.1, x1.shape), 0, 1)
  return {'x1': tf.constant(x1, tf.float32), 'x2': tf.constant(x2, tf.float32)}


def _tuba_numpy(s, a):
  """1 + E_p[S - a] - E_q[e^(S - a)] of a square score matrix (positives on the diagonal)."""
  s = np.asarray(s, np.float64)
  off = ~np.eye(len(s), dtype=bool)
  return 1.0 + np.mean(np.diag(s) - a) - np.mean(np.exp(s[off] - a))


def test_the_variable_is_built_only_when_learned_and_is_trained_with_the_rest():
  task = _task()
  assert task.log_baseline.name.startswith('log_baseline')
  assert task.log_baseline.dtype == tf.float32 and task.log_baseline.shape == ()
  assert float(task.log_baseline) == 0.0
  assert any(v is task.log_baseline for v in task.variables)
  assert task.trackables()['log_baseline'] is task.log_baseline
  assert task.metadata()['learned_baseline'] is True
  plain = _task(learned_baseline=False)
  assert plain.log_baseline is None and 'log_baseline' not in plain.trackables()
  assert len(plain.variables) == len(task.variables) - 1
  assert 'learned_baseline' not in plain.metadata()
  # A 'tuba_<a>' name starts the baseline at its a.
  assert float(_task('tuba_0.5').log_baseline) == 0.5


@pytest.mark.parametrize('estimator', ['infonce', 'nwj', 'dv', 'js', 'smile', 'alpha'])
def test_other_estimators_refuse_a_learned_baseline(estimator):
  with pytest.raises(ValueError, match="learned_baseline=True .* needs estimator 'tuba'"):
    mi_maximization.MIMaximization(estimator=estimator, learned_baseline=True)
  mi_maximization.MIMaximization(estimator=estimator)  # Without it: fine.


def test_the_loss_gradient_in_a_is_that_of_the_tuba_formula():
  """d/da [1 + E_p[S - a] - E_q e^(S - a)] = -1 + E_q e^(S - a); the loss is -I_TUBA."""
  task = _task()
  task.log_baseline.assign(0.3)
  batch = _batch()
  with tf.GradientTape() as tape:
    loss, i_est = task.loss(batch)
  grad = float(tape.gradient(loss, task.log_baseline))
  s = task.critic(task.g1(batch['x1']), task.g2(batch['x2'])).numpy().astype(np.float64)
  off = ~np.eye(BATCH, dtype=bool)
  expected = -(-1.0 + np.mean(np.exp(s[off] - 0.3)))
  assert grad == pytest.approx(expected, rel=1e-5, abs=1e-6)
  assert float(i_est) == pytest.approx(_tuba_numpy(s, 0.3), rel=1e-5, abs=1e-5)
  assert float(loss) == pytest.approx(-float(i_est), abs=1e-7)
  # A finite difference of the loss in a agrees too.
  h = 1e-2
  values = []
  for a in (0.3 + h, 0.3 - h):
    task.log_baseline.assign(a)
    values.append(float(task.loss(batch)[0]))
  assert (values[0] - values[1]) / (2 * h) == pytest.approx(expected, rel=1e-3, abs=1e-4)


def test_the_evaluation_estimate_is_tuba_at_the_learned_baseline():
  task = _task()
  task.log_baseline.assign(0.7)
  batch = _batch(4 * BATCH, seed=1)
  z1, z2 = task.g1(batch['x1']), task.g2(batch['x2'])
  d = task.eval_batch_size = BATCH  # Four blocks of d pairs.
  task._build_eval_fns()  # pylint: disable=protected-access
  values = {k: float(v) for k, v in task._eval_fns(z1, z2).items()}  # pylint: disable=protected-access
  blocks = [task.critic(z1[k * d:(k + 1) * d], z2[k * d:(k + 1) * d]).numpy()
            for k in range(4)]
  learned = np.mean([_tuba_numpy(s, 0.7) for s in blocks])
  fixed = np.mean([_tuba_numpy(s, 0.0) for s in blocks])
  assert values[mi_maximization.LEARNED_TUBA] == pytest.approx(learned, rel=1e-5, abs=1e-5)
  assert values['tuba'] == pytest.approx(fixed, rel=1e-5, abs=1e-5)  # The registry's, a = 0.
  assert abs(learned - fixed) > 1e-2  # The two are told apart.


def test_evaluate_reports_i_est_at_the_learned_baseline():
  """The task's evaluate(): I_EST/test and I_EST/train are TUBA at the variable's a (NumPy over
  the test blocks), I_TUBA/test the registry's a = 0, and tuba/log_baseline the variable."""
  halves = data_lib.ImageHalves(train_split='train[:512]', probe_train_split='train[:512]',
                                test_split='test[:256]')
  small = lambda name: MLP(hidden_units=(32,), output_dim=8, name=name)  # noqa: E731
  task = mi_maximization.MIMaximization(encoder=small, critic=critics.Bilinear,
                                        estimator='tuba', learned_baseline=True, data=halves,
                                        eval_batch_size=64, train_estimate_examples=256)
  tf.keras.utils.set_random_seed(0)
  task.build(64, seed=0)
  task.log_baseline.assign(0.7)
  results = task.evaluate(step=1)
  for split in ('test', 'train'):
    x1, x2, _ = halves.eval_split(split)
    z1, z2 = task.g1(x1[:256]), task.g2(x2[:256])
    blocks = [task.critic(z1[k:k + 64], z2[k:k + 64]).numpy() for k in range(0, 256, 64)]
    learned = np.mean([_tuba_numpy(b, 0.7) for b in blocks])
    fixed = np.mean([_tuba_numpy(b, 0.0) for b in blocks])
    assert results[f'I_EST/{split}'] == pytest.approx(learned, rel=1e-5, abs=1e-5)
    assert results[f'I_TUBA/{split}'] == pytest.approx(fixed, rel=1e-5, abs=1e-5)
    assert abs(learned - fixed) > 1e-2
  assert results['tuba/log_baseline'] == pytest.approx(0.7)
  assert not any(mi_maximization.LEARNED_TUBA in k for k in results)  # An internal key.


@pytest.fixture(scope='module')
def tuba_run(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp('tuba') / 'run'
  launch.train_with_gin(
      str(model_dir), [str(REPO / 'gin' / 'sec3_2_critics_bilinear_nwj.gin')],
      list(TINY_BINDINGS) + ["MIMaximization.estimator = 'tuba'",
                             'MIMaximization.learned_baseline = True'])
  return model_dir


def test_a_run_trains_checkpoints_and_logs_the_baseline(tuba_run):
  records = {(r['step'], r['metric']): r['value'] for r in metrics_log.read(tuba_run)
             if r['split'] == 'eval'}
  steps = sorted({s for s, m in records if m == 'I_EST/test'})
  assert steps == [0, 2, 4]
  baseline = [records[(s, 'tuba/log_baseline')] for s in steps]
  assert baseline[0] == 0.0
  assert abs(baseline[-1]) > 1e-6  # Trained (Adam moves it by about the learning rate).
  reader = tf.train.load_checkpoint(str(tuba_run / 'checkpoints'))
  keys = [k for k in reader.get_variable_to_shape_map()
          if k.startswith('log_baseline/') and 'OPTIMIZER' not in k]
  assert keys == ['log_baseline/.ATTRIBUTES/VARIABLE_VALUE']
  assert float(reader.get_tensor(keys[0])) == pytest.approx(baseline[-1], abs=1e-7)
  for s in steps:
    # I_EST is TUBA at the learned a; with a this small it is close to the logged a = 0 one.
    a, i_est, fixed = (records[(s, 'tuba/log_baseline')], records[(s, 'I_EST/test')],
                       records[(s, 'I_TUBA/test')])
    assert np.isfinite(i_est) and abs(i_est - fixed) <= 10 * abs(a) + 1e-6
  info = json.loads((tuba_run / 'run_info.json').read_text())
  assert info['task']['learned_baseline'] is True


_MIRRORED_SCRIPT = r'''
import json
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from mi_tf import critics, distribute
from mi_tf.encoders import MLP
from mi_tf.tasks import mi_maximization
sys.path.insert(0, 'tests')
import replica_runs

B = 16
rng = np.random.default_rng(0)
X1 = tf.constant(rng.uniform(0, 1, (B, 14, 28, 1)), tf.float32)
X2 = tf.constant(np.clip(X1.numpy() + rng.normal(0, 0.1, X1.shape), 0, 1), tf.float32)
mirrored = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
tf.keras.utils.set_random_seed(0)
small = lambda name: MLP(hidden_units=(32,), output_dim=16, name=name)  # noqa: E731
task = mi_maximization.MIMaximization(encoder=small, estimator='tuba', critic=critics.Bilinear,
                                      learned_baseline=True)
with mirrored.scope():
  task.build(B, seed=0)
  task.log_baseline.assign(0.4)
with tf.GradientTape() as tape:
  loss_one, est_one = task.loss({'x1': X1, 'x2': X2})
grads_one = tape.gradient(loss_one, task.variables)


def rows(ctx):
  k = ctx.replica_id_in_sync_group
  return {'x1': X1[k * B // 2:(k + 1) * B // 2], 'x2': X2[k * B // 2:(k + 1) * B // 2]}


def two_replicas(task):
  """(loss, I_EST per replica, summed gradient) of the task's loss on two replicas."""
  return replica_runs.loss_on_replicas(mirrored, task, rows)


loss, est, grads = two_replicas(task)
out = {
    'replicas': mirrored.num_replicas_in_sync,
    'variable': type(task.log_baseline).__name__,
    'loss_one': float(loss_one), 'loss_two': [float(v) for v in loss],
    'est_one': float(est_one), 'est_two': [float(v) for v in est],
    'a_grad_one': float(grads_one[-1]), 'a_grad_two': float(grads[-1]),
    'max_grad_diff': max(float(np.max(np.abs(a.numpy() - c.numpy())))
                         for a, c in zip(grads_one, grads))}

# MINE's moving average of I_DV: the same ema before each, then the same loss, gradient, ema.
tf.keras.utils.set_random_seed(0)
task = mi_maximization.MIMaximization(encoder=small, estimator='dv', critic=critics.Bilinear,
                                      dv_moving_average=0.9)
with mirrored.scope():
  task.build(B, seed=0)
task.dv_log_ema.assign(0.3)
with tf.GradientTape() as tape:
  loss_one, est_one = task.loss({'x1': X1, 'x2': X2})
grads_one = tape.gradient(loss_one, task.variables)
ema_one = float(task.dv_log_ema.numpy())
task.dv_log_ema.assign(0.3)
loss, est, grads = two_replicas(task)
out['dv'] = {'variable': type(task.dv_log_ema).__name__,
             'loss_one': float(loss_one), 'loss_two': [float(v) for v in loss],
             'est_one': float(est_one), 'est_two': [float(v) for v in est],
             'ema_one': ema_one,
             'ema_two': [float(v) for v in mirrored.experimental_local_results(task.dv_log_ema)],
             'max_grad': max(float(np.max(np.abs(a.numpy()))) for a in grads_one),
             'max_grad_diff': max(float(np.max(np.abs(a.numpy() - c.numpy())))
                                  for a, c in zip(grads_one, grads))}
print('RESULTS ' + json.dumps(out))
'''


@pytest.mark.e2e  # Several processes: the e2e tier (pytest.ini).
def test_two_mirrored_replicas_give_the_one_device_value_and_gradient():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-c', _MIRRORED_SCRIPT], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [x for x in proc.stdout.splitlines() if x.startswith('RESULTS ')][-1]
  out = json.loads(line[len('RESULTS '):])
  assert out['replicas'] == 2 and 'Mirrored' in out['variable']
  for value in out['est_two']:
    assert value == pytest.approx(out['est_one'], abs=1e-5)
  assert out['loss_two'][0] == pytest.approx(out['loss_one'], abs=1e-5)
  assert out['a_grad_two'] == pytest.approx(out['a_grad_one'], abs=1e-5)
  assert abs(out['a_grad_one']) > 1e-3  # Not a comparison of zeros.
  assert out['max_grad_diff'] <= 1e-5
  dv = out['dv']
  assert 'Mirrored' in dv['variable'] and len(dv['ema_two']) == 2
  for value in dv['est_two']:
    assert value == pytest.approx(dv['est_one'], abs=1e-5)
  assert dv['loss_two'][0] == pytest.approx(dv['loss_one'], abs=1e-5)
  for value in dv['ema_two']:  # Both replicas' copies hold the one-device update.
    assert value == pytest.approx(dv['ema_one'], abs=1e-5)
  assert dv['ema_one'] != pytest.approx(0.3, abs=1e-3)  # It was updated.
  assert dv['max_grad_diff'] <= 1e-5 and dv['max_grad'] > 1e-3


# ---------------------------------------------------------------------------------------
# MINE's moving-average gradient of I_DV (Belghazi et al. 2018, Sec. 3.2).

@pytest.mark.parametrize('estimator, beta', [('nwj', 0.9), ('smile', 0.9), ('tuba', 0.5),
                                             ('dv', 1.0), ('dv', -0.1)])
def test_the_moving_average_is_for_dv_with_a_decay_in_0_1(estimator, beta):
  with pytest.raises(ValueError, match="dv_moving_average is the decay in \\[0, 1\\)"):
    mi_maximization.MIMaximization(estimator=estimator, dv_moving_average=beta)


def test_the_moving_average_updates_and_gives_mine_s_gradient():
  beta = 0.9
  task = _task('dv', learned_baseline=False, dv_moving_average=beta)
  assert task.trackables()['dv_log_moving_average'] is task.dv_log_ema
  assert not any(v is task.dv_log_ema for v in task.variables)  # Not trained.
  assert task.metadata()['dv_moving_average'] == beta
  plain = _task('dv', learned_baseline=False)
  assert plain.dv_log_ema is None and 'dv_log_moving_average' not in plain.trackables()
  assert 'dv_moving_average' not in plain.metadata()

  def scores(batch):
    return task.critic(task.g1(batch['x1']), task.g2(batch['x2']))

  def m_and_dv(s):
    s = np.asarray(s, np.float64)
    off = ~np.eye(len(s), dtype=bool)
    m = np.mean(np.exp(s[off]))
    return m, np.mean(np.diag(s)) - np.log(m)

  first, second = _batch(seed=2), _batch(seed=3)
  loss, i_est = task.loss(first)
  m1, dv1 = m_and_dv(scores(first))
  assert float(task.dv_log_ema) == pytest.approx(np.log(m1), abs=1e-5)  # First step: ema = m.
  assert float(i_est) == pytest.approx(dv1, abs=1e-5) and float(loss) == -float(i_est)
  task.dv_log_ema.assign(np.log(m1) + 1.0)  # An average far from this batch's m.
  old = float(task.dv_log_ema)
  with tf.GradientTape() as tape:
    loss, i_est = task.loss(second)
  grads = tape.gradient(loss, task.variables)
  m2, dv2 = m_and_dv(scores(second))
  ema = beta * np.exp(old) + (1 - beta) * m2
  assert float(task.dv_log_ema) == pytest.approx(np.log(ema), abs=1e-5)
  assert float(i_est) == pytest.approx(dv2, abs=1e-5)  # The value is I_DV's.
  # The gradient is that of -(E_p[f] - E_q[e^f] / ema), written out independently here.
  off = tf.constant(~np.eye(BATCH, dtype=bool))
  with tf.GradientTape(persistent=True) as tape:
    s = scores(second)
    mean_exp = tf.reduce_mean(tf.boolean_mask(tf.exp(s), off))
    mine = -(tf.reduce_mean(tf.linalg.diag_part(s)) - mean_exp / tf.constant(ema, tf.float32))
    dv_plain = -(tf.reduce_mean(tf.linalg.diag_part(s)) - tf.math.log(mean_exp))
  expected, plain_grads = tape.gradient(mine, task.variables), tape.gradient(dv_plain,
                                                                              task.variables)
  for g, e in zip(grads, expected):
    np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-4, atol=1e-6)
  # ... and not the plain DV gradient (the average differs from this batch's m).
  assert max(float(np.max(np.abs(g.numpy() - p.numpy())))
             for g, p in zip(grads, plain_grads)) > 1e-3
