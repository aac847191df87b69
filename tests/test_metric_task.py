"""The metric-learning task (mi_tf/tasks/metric.py, beyond the paper: Sec. 4, App. C): the
K-pair objective's gradients are max I_NCE's, mined InfoNCE against plain I_NCE and a numpy
top-k, a triplet run end to end, and its argument errors."""

import functools
import json
import math
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf

import replica_runs
from conftest import GIN_DIR, REPO, TINY_BINDINGS
from mi_tf import critics
from mi_tf import estimators
from mi_tf import launch
from mi_tf import metric_learning
from mi_tf import metrics_log
from mi_tf.encoders import MLP
from mi_tf.tasks import metric
from mi_tf.tasks import mi_maximization

_SMALL_MLP = functools.partial(MLP, hidden_units=(32,), output_dim=16)
B = 16


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  x1 = rng.uniform(0, 1, (B, 14, 28, 1)).astype(np.float32)
  x2 = np.clip(x1[:, ::-1] + 0.2 * rng.standard_normal(x1.shape), 0, 1).astype(np.float32)
  return {'x1': tf.constant(x1), 'x2': tf.constant(x2)}


def _built(cls, **kwargs):
  tf.keras.utils.set_random_seed(1)
  task = cls(encoder=_SMALL_MLP, critic=kwargs.pop('critic', critics.InnerProduct), **kwargs)
  task.build(B, seed=0)
  return task


def _loss_and_grads(task, batch):
  with tf.GradientTape() as tape:
    loss, i_est = task.loss(batch)
  return float(loss), float(i_est), tape.gradient(loss, task.variables)


def test_kpair_objective_has_the_gradients_of_max_infonce_with_a_shared_encoder():
  """App. C at task level: one encoder, f(x, y) = x^T y; loss = log K - I_NCE, same gradients."""
  mi = _built(mi_maximization.MIMaximization, estimator='infonce', shared_encoder=True)
  kp = _built(metric.MetricLearning, objective='kpair', shared_encoder=True)
  for a, b in zip(kp.g1.weights, mi.g1.weights):
    a.assign(b + 0.0)
  batch = _batch()
  mi_loss, mi_est, mi_grads = _loss_and_grads(mi, batch)
  kp_loss, kp_est, kp_grads = _loss_and_grads(kp, batch)
  np.testing.assert_allclose(kp_est, mi_est, atol=1e-5)
  np.testing.assert_allclose(kp_loss, mi_loss + math.log(B), atol=1e-5)  # -I_NCE + log K.
  assert len(kp_grads) == len(mi_grads) == 4  # Two Dense layers, one (shared) encoder.
  for a, b in zip(kp_grads, mi_grads):
    assert float(tf.reduce_max(tf.abs(b))) > 1e-4
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=1e-5)


def test_kpair_rows_with_a_row_offset_are_the_global_rows():
  rng = np.random.default_rng(0)
  s = tf.constant(rng.standard_normal((12, 12)) * 3)
  whole = metric_learning.kpair_loss_per_row(s).numpy()
  for offset in (0, 4, 8):
    block = metric_learning.kpair_loss_per_row(s[offset:offset + 4], offset).numpy()
    np.testing.assert_allclose(block, whole[offset:offset + 4], rtol=1e-12)
    np.testing.assert_allclose(
        np.log(12.0) - block, estimators.infonce_per_row(s[offset:offset + 4], offset).numpy(),
        rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('offset', [0, 5])
def test_mined_infonce_with_every_negative_is_infonce(offset):
  rng = np.random.default_rng(1)
  s = tf.constant(rng.standard_normal((5, 10)) * 4, tf.float64)
  plain = estimators.infonce_per_row(s, offset).numpy()
  for mining in metric_learning.MINING:
    mined = metric_learning.mined_infonce_per_row(s, offset, 9, mining, seed=[0, 3]).numpy()
    np.testing.assert_allclose(mined, plain, rtol=1e-12, atol=1e-12)


def test_hard_negatives_lower_infonce_and_are_a_numpy_top_k():
  rng = np.random.default_rng(2)
  big_b, k_neg, offset = 32, 7, 8
  s = rng.standard_normal((8, big_b)) * 2
  scores = tf.constant(s)
  chosen = metric_learning.mine_negatives(scores, offset, k_neg, 'hard').numpy()
  for i in range(8):
    negatives = [j for j in range(big_b) if j != i + offset]
    expected = sorted(negatives, key=lambda j: -s[i, j])[:k_neg]
    assert list(chosen[i]) == expected
  hard = metric_learning.mined_infonce_per_row(scores, offset, k_neg, 'hard').numpy()
  log_k = math.log(k_neg + 1)
  for seed in range(5):
    random = metric_learning.mined_infonce_per_row(scores, offset, k_neg, 'random',
                                                   seed=[seed, 0]).numpy()
    assert np.all(hard <= random + 1e-12) and np.all(random <= log_k + 1e-12)
    assert random.mean() > hard.mean() + 0.1
  # A literal numpy value of the hard rows.
  for i in range(8):
    cols = np.concatenate([[s[i, i + offset]], s[i, chosen[i]]])
    ref = log_k + s[i, i + offset] - np.log(np.sum(np.exp(cols)))
    np.testing.assert_allclose(hard[i], ref, rtol=1e-12)


def test_random_negatives_are_distinct_uniform_and_change_with_the_step():
  s = tf.zeros((4, 64))
  offset = 4
  draws = [metric_learning.mine_negatives(s, offset, 20, 'random', seed=[0, step]).numpy()
           for step in range(200)]
  for d in draws[:3]:
    for i, row in enumerate(d):
      assert len(set(row)) == 20 and i + offset not in row
  assert not np.array_equal(draws[0], draws[1])
  np.testing.assert_array_equal(  # The same seed: the same draw (resumable).
      draws[5], metric_learning.mine_negatives(s, offset, 20, 'random', seed=[0, 5]).numpy())
  # Replicas: row block [4, 8) of the global draw is what a replica with offset 4 draws.
  whole = metric_learning.mine_negatives(tf.zeros((8, 64)), 0, 20, 'random', seed=[0, 9])
  np.testing.assert_array_equal(whole.numpy()[4:], draws[9])
  counts = np.bincount(np.concatenate([d[0] for d in draws]), minlength=64)
  assert counts[offset] == 0
  others = np.delete(counts, offset)  # 200 x 20 / 63 = 63.5 expected per column.
  assert others.min() > 30 and others.max() < 100
  # In the task: the seed follows the optimizer step.
  task = _built(metric.MetricLearning, objective='infonce_mined', num_negatives=5,
                critic=critics.Bilinear)
  first = task.mining_seed().numpy()
  task.train_step(_batch())
  assert task.mining_seed().numpy()[1] == first[1] + 1


def test_mined_objective_in_the_task_is_its_i_est_and_below_log_k():
  for mining in metric.MINING:
    task = _built(metric.MetricLearning, objective='infonce_mined', num_negatives=5,
                  mining=mining, critic=critics.Bilinear)
    loss, i_est, grads = _loss_and_grads(task, _batch())
    assert loss == pytest.approx(-i_est) and i_est <= math.log(6) + 1e-6
    assert all(g is not None for g in grads) and len(grads) == 9  # g1, g2 and W.
    assert task.metadata()['objective'] == 'infonce_mined'
    assert task.metadata()['mining'] == mining and task.metadata()['num_negatives'] == 5


def test_triplet_trains_and_writes_a_complete_run(tmp_path):
  bindings = list(TINY_BINDINGS) + ['MLP.hidden_units = (64,)', 'MLP.output_dim = 16',
                                    'train.eval_every = 4', 'train.checkpoint_every = 4']
  final = launch.train_with_gin(str(tmp_path), [str(GIN_DIR / 'metric_triplet_mlp.gin')],
                                bindings)
  for name in ('final_metrics.json', 'run_info.json', 'config.gin', 'metrics.jsonl'):
    assert (tmp_path / name).is_file(), name
  assert final['step'] == 4
  for key in ('I_EST/test', 'I_NCE/test', 'probe/test_accuracy', 'probe_knn/test_accuracy'):
    assert math.isfinite(final[key]), key
  assert final['I_EST/test'] == final['I_NCE/test']
  records = metrics_log.read(str(tmp_path))
  train = [r for r in records if r['split'] == 'train' and r['metric'] in ('loss', 'I_EST')]
  assert train and all(math.isfinite(float(r['value'])) for r in train)
  meta = json.loads((tmp_path / 'export' / 'mi_tf_metadata.json').read_text())
  assert meta['task'] == 'metric_learning' and meta['objective'] == 'triplet'
  assert meta['margin'] == 0.2 and meta['shared_encoder'] is True
  assert meta['critic'] == 'Cosine'  # The gin file's evaluation critic (T = 0.1).


@pytest.mark.parametrize('critic', [critics.InnerProduct, critics.Cosine])
def test_triplet_loss_of_the_task_is_facenet_on_normalised_features(critic):
  task = _built(metric.MetricLearning, objective='triplet', shared_encoder=True, margin=0.3,
                critic=critic)
  batch = _batch()
  loss, i_est, grads = _loss_and_grads(task, batch)
  z1, z2 = task.g1(batch['x1']), task.g1(batch['x2'])
  a, p = tf.math.l2_normalize(z1, axis=1), tf.math.l2_normalize(z2, axis=1)
  expected = float(metric_learning.triplet_loss(a, p, margin=0.3))
  assert loss == pytest.approx(expected, abs=1e-6) and loss > 0
  # I_EST: I_NCE of the (parameter-free) critic's scores, which the loss does not read.
  assert i_est == pytest.approx(float(estimators.infonce(critic()(z1, z2))), abs=1e-5)
  assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


@pytest.mark.parametrize('kwargs, message', [
    (dict(objective='npair'), 'objective must be one of'),
    (dict(objective='triplet', margin=0.0), 'margin must be a positive'),
    (dict(objective='infonce_mined'), 'needs num_negatives'),
    (dict(objective='infonce_mined', num_negatives=4, mining='semi'), 'mining must be one of'),
    (dict(objective='kpair', num_negatives=4), 'num_negatives is for'),
    (dict(objective='kpair', estimator='nwj'), 'estimator cannot be set'),
])
def test_bad_arguments_give_one_value_error(kwargs, message):
  with pytest.raises(ValueError, match=message):
    metric.MetricLearning(**kwargs)


def test_too_many_negatives_or_a_weighted_critic_for_triplet_are_refused():
  with pytest.raises(ValueError, match='below the batch size'):
    _built(metric.MetricLearning, objective='infonce_mined', num_negatives=B)
  with pytest.raises(ValueError, match='below the number of columns'):
    metric_learning.mined_infonce_per_row(tf.zeros((4, 4)), 0, 4, 'hard')
  with pytest.raises(ValueError, match='does not train the critic'):
    _built(metric.MetricLearning, objective='triplet', critic=critics.Bilinear)


def test_mimaximization_bindings_reach_the_subclass():
  launch.parse_gin([str(GIN_DIR / 'metric_kpair_shared_mlp.gin')],
                   ['MIMaximization.eval_batch_size = 16', 'MetricLearning.learning_rate = 3e-4'])
  task = metric.MetricLearning()
  gin.clear_config()
  assert task.eval_batch_size == 16 and task.learning_rate == 3e-4
  assert task.shared_encoder and task.metadata()["critic"] == "InnerProduct"
  assert task.objective_name == 'kpair' and task.estimator == 'infonce'


# ---------------------------------------------------------------- two replicas (subprocess)

_DISTRIBUTED = {  # name -> MetricLearning arguments; global batch B = 16 over 2 replicas.
    'kpair': dict(objective='kpair', shared_encoder=True),
    'triplet': dict(objective='triplet', shared_encoder=True),
    # Random mining slices this replica's rows of the global draw (hard mining is per row).
    'mined_random': dict(objective='infonce_mined', num_negatives=7, critic=critics.Bilinear),
}


def _loss_and_grads_under(strategy, kwargs, global_batch=B):
  """Global loss, I_EST and summed gradients of one global batch under ``strategy``; each
  replica gets its rows of the same batch."""
  tf.keras.utils.set_random_seed(0)
  kwargs = dict(kwargs)
  critic = kwargs.pop('critic', critics.InnerProduct)
  task = metric.MetricLearning(encoder=_SMALL_MLP, critic=critic, **kwargs)
  with strategy.scope():
    task.build(global_batch, seed=0)
  whole = _batch()
  per_replica = global_batch // strategy.num_replicas_in_sync

  def rows(ctx):
    start = ctx.replica_id_in_sync_group * per_replica
    return {k: v[start:start + per_replica] for k, v in whole.items()}

  losses, estimates, grads = replica_runs.loss_on_replicas(strategy, task, rows)
  loss, i_est = losses[0], estimates[0]
  return float(loss), float(i_est), [g.numpy() for g in grads]


def _distributed_main():
  """Run as a script (its own process: logical devices are set before TF starts)."""
  mirrored = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  out = {'replicas': mirrored.num_replicas_in_sync}
  for name, kwargs in _DISTRIBUTED.items():
    l1, i1, g1 = _loss_and_grads_under(tf.distribute.get_strategy(), kwargs)
    l2, i2, g2 = _loss_and_grads_under(mirrored, kwargs)
    out[name] = {'loss': [l1, l2], 'i_est': [i1, i2],
                 'max_grad_diff': max(float(np.max(np.abs(a - b))) for a, b in zip(g1, g2)),
                 'max_grad': max(float(np.max(np.abs(a))) for a in g1)}
  print(json.dumps(out))


@pytest.mark.e2e  # Several processes: the e2e tier (pytest.ini).
def test_two_replicas_compute_the_global_batch_objective_of_one_device():
  proc = subprocess.run([sys.executable, __file__, 'distributed'], capture_output=True,
                        text=True, timeout=600, cwd=str(REPO))
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out['replicas'] == 2
  for name in _DISTRIBUTED:
    r = out[name]
    assert r['loss'][1] == pytest.approx(r['loss'][0], abs=1e-5), name
    assert r['i_est'][1] == pytest.approx(r['i_est'][0], abs=1e-5), name
    assert r['max_grad'] > 1e-4 and r['max_grad_diff'] <= 1e-5, (name, r)


if __name__ == '__main__' and sys.argv[1:] == ['distributed']:
  _cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  _distributed_main()
