"""The Gaussian toy of Sec. 4: samplers, true MI, the task's input stream and evaluation."""

import math

import numpy as np
import pytest
import tensorflow as tf

from mi_tf import toy_data
from mi_tf.tasks import gaussian_toy


def test_true_mi_from_the_covariances():
  np.testing.assert_allclose(toy_data.marginal_cov(), [[2.0, 0.4], [0.4, 2.0]])
  assert toy_data.true_mi() == pytest.approx(-0.5 * math.log(1 - 0.2**2), rel=1e-12)
  assert round(toy_data.true_mi(), 4) == 0.0204
  assert toy_data.gaussian_mi([[1.0, 0.0], [0.0, 1.0]]) == 0.0


def test_iid_covariance_on_a_large_sample():
  x, y = toy_data.sample_iid(200_000, tf.constant([3, 4]))
  cov = np.cov(np.concatenate([x.numpy(), y.numpy()], axis=1).T)
  # Standard error of a covariance entry at n = 200k is at most 2 sqrt(2 / n) ~ 0.006.
  np.testing.assert_allclose(cov, [[2.0, 0.4], [0.4, 2.0]], atol=0.03)


def _batch_means(sampler, num_batches=2000, batch_size=128):
  """Means [num_batches, 2] of (x, y) over each of num_batches batches (seeds (7, k))."""
  def mean(k):
    x, y = sampler(batch_size, tf.stack([tf.constant(7, tf.int64), k]))
    return tf.concat([tf.reduce_mean(x, axis=0), tf.reduce_mean(y, axis=0)], axis=0)
  ds = tf.data.Dataset.range(num_batches).map(mean).batch(num_batches)
  return next(iter(ds)).numpy()


def test_noniid_pairs_of_a_batch_share_one_z():
  # With (almost) no per-element noise every pair IS the batch's Z: all rows identical.
  tiny = 1e-12 * np.eye(2)
  x, y = toy_data.sample_noniid(128, tf.constant([1, 2]), sigma_e=tiny)
  np.testing.assert_allclose(x.numpy(), x.numpy()[0, 0], atol=1e-5)
  np.testing.assert_allclose(y.numpy(), y.numpy()[0, 0], atol=1e-5)
  # With the paper's noise: the deviations from the batch mean have covariance Sigma_e only.
  x, y = toy_data.sample_noniid(100_000, tf.constant([5, 6]))
  xy = np.concatenate([x.numpy(), y.numpy()], axis=1)
  np.testing.assert_allclose(np.cov(xy.T), [[1.0, 0.9], [0.9, 1.0]], atol=0.03)


def test_batch_mean_structure_noniid_versus_iid():
  """Batch means: cov Sigma_Z + Sigma_e / B for non-i.i.d. batches, Sigma / B for i.i.d."""
  b = 128
  noniid = np.cov(_batch_means(toy_data.sample_noniid, batch_size=b).T)
  expected = np.array(toy_data.SIGMA_Z) + np.array(toy_data.SIGMA_E) / b
  # 2,000 batch means: the standard error of each entry is about 0.03.
  np.testing.assert_allclose(noniid, expected, atol=0.15)
  iid = np.cov(_batch_means(toy_data.sample_iid, batch_size=b).T)
  np.testing.assert_allclose(iid, toy_data.marginal_cov() / b, atol=0.006)


def test_samplers_are_pure_functions_of_the_seed():
  for sampler in (toy_data.sample_iid, toy_data.sample_noniid):
    a = sampler(16, tf.constant([1, 5]))
    b = sampler(16, tf.constant([1, 5]))
    c = sampler(16, tf.constant([1, 6]))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    assert not np.allclose(a[0].numpy(), c[0].numpy())


def _first_batches(task, batch_size, seed, start_step, n, context=None):
  ds = task.dataset_fn(batch_size, seed, start_step)(context)
  return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


@pytest.mark.parametrize('sampling', ['iid', 'noniid'])
def test_stream_is_a_pure_function_of_seed_and_step(sampling):
  task = gaussian_toy.GaussianToy(sampling=sampling)
  run = _first_batches(task, 32, seed=3, start_step=0, n=6)
  resumed = _first_batches(task, 32, seed=3, start_step=4, n=2)
  for a, b in zip(run[4:], resumed):
    np.testing.assert_array_equal(a['x'], b['x'])
    np.testing.assert_array_equal(a['y'], b['y'])
  other_seed = _first_batches(task, 32, seed=4, start_step=0, n=1)
  assert not np.allclose(run[0]['x'], other_seed[0]['x'])


def test_replicas_slice_the_same_global_batch_and_share_its_z():
  """Two replicas: their per-replica batches concatenate to the one-device global batch."""
  task = gaussian_toy.GaussianToy(sampling='noniid', sigma_e=1e-12 * np.eye(2))
  single = _first_batches(task, 64, seed=0, start_step=0, n=2)
  ctx = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                   num_replicas_in_sync=2)
  replicas = _first_batches(task, 64, seed=0, start_step=0, n=4, context=ctx)
  assert replicas[0]['x'].shape == (32, 1)
  for step in range(2):
    glued = np.concatenate([replicas[2 * step]['x'], replicas[2 * step + 1]['x']])
    np.testing.assert_array_equal(glued, single[step]['x'])
    # One Z for the whole global batch: both replicas see the same value.
    np.testing.assert_allclose(glued, glued[0, 0], atol=1e-5)
  # Two input pipelines (multi-worker): each takes its half of every global batch.
  halves = [_first_batches(task, 64, seed=0, start_step=0, n=1,
                           context=tf.distribute.InputContext(2, p, 2))[0]['x']
            for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), single[0]['x'])


@pytest.mark.parametrize('estimator', ['infonce', 'nwj'])
def test_training_and_evaluation(estimator):
  tf.keras.utils.set_random_seed(0)
  task = gaussian_toy.GaussianToy(sampling='noniid', estimator=estimator, eval_batches=20,
                              learning_rate=1e-3)
  task.build(128, seed=0)
  assert len(task.critic.trainable_variables) == 2 + 1 + 2 * 4 + 2  # 5 hidden + output.
  batches = iter(task.dataset_fn(128, 0, 0)(None))
  first = task.train_step(next(batches))
  assert float(first['finite']) == 1.0
  assert float(first['loss']) == pytest.approx(-float(first['I_EST']))
  results = task.evaluate(0)
  assert results['true_mi'] == pytest.approx(toy_data.true_mi())
  key = 'I_NCE/eval' if estimator == 'infonce' else 'I_NWJ/eval'
  assert results['I_EST/eval'] == results[key]
  assert results['I_NCE/eval'] <= math.log(128)
  assert all(math.isfinite(v) for v in results.values())
  # Evaluation batches are fixed: evaluating twice gives the same numbers.
  assert task.evaluate(1)['I_EST/eval'] == results['I_EST/eval']


def test_evaluation_batches_are_fixed_within_a_run_and_independent_across_seeds():
  values = {}
  for seed in (0, 1):
    tf.keras.utils.set_random_seed(0)  # The same critic weights for both runs.
    task = gaussian_toy.GaussianToy(sampling='iid', eval_batches=20)
    task.build(128, seed=seed)
    values[seed] = task.evaluate(0)['I_NCE/eval']
    assert task.evaluate(0)['I_NCE/eval'] == values[seed]
  assert values[0] != values[1]
  tf.keras.utils.set_random_seed(0)
  shared = gaussian_toy.GaussianToy(sampling='iid', eval_batches=20, eval_seed=0)
  shared.build(128, seed=1)
  assert shared.evaluate(0)['I_NCE/eval'] == values[0]


def test_unknown_sampling_is_refused():
  with pytest.raises(ValueError, match='sampling'):
    gaussian_toy.GaussianToy(sampling='shuffled')
