"""Jacobian conditioning (mi_tf/conditioning.py) and the residual MLP of Sec. 3.1
(mi_tf/encoders/residual_mlp.py), and their hook into MIMaximization's evaluation."""

import numpy as np
import pytest
import tensorflow as tf

from mi_tf import conditioning
from mi_tf import critics
from mi_tf import data
from mi_tf.tasks import mi_maximization
from mi_tf.encoders import ResidualMLP


def _matrix_with_singular_values(s, seed=0):
  rng = np.random.default_rng(seed)
  u, _ = np.linalg.qr(rng.normal(size=(len(s), len(s))))
  v, _ = np.linalg.qr(rng.normal(size=(len(s), len(s))))
  return u @ np.diag(s) @ v.T


def test_linear_encoder_gives_the_exact_log_ratio_of_its_singular_values():
  s = np.array([50.0, 20.0, 7.0, 3.0, 1.0, 0.5] + [0.9] * 14)  # D = 20 = 4 x 5 x 1.
  a = tf.constant(_matrix_with_singular_values(s), tf.float64)
  fn = lambda x: tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), a)  # noqa: E731
  x = tf.constant(np.random.default_rng(1).normal(size=(3, 4, 5, 1)), tf.float64)
  jac = conditioning.input_jacobian(fn, x)
  assert jac.shape == (3, 20, 20)
  np.testing.assert_allclose(jac.numpy()[1], a.numpy().T, atol=1e-12)
  np.testing.assert_allclose(conditioning.log_condition_numbers(jac), [np.log(100.0)] * 3,
                             rtol=1e-10)
  summary = conditioning.log_condition_summary(fn, x)
  for p in conditioning.PERCENTILES:
    assert summary[f'jacobian/log_cond_p{p}'] == pytest.approx(np.log(100.0), rel=1e-10)
  assert summary['jacobian/log_cond'].shape == (3,)


def test_percentiles_follow_the_colab_indexing():
  # Sorted values v[0..9]: percentile p is v[floor(p / 100 * 9)].
  values = np.arange(10.0)[::-1]
  diag = np.stack([np.diag([np.exp(v), 1.0]) for v in values])
  fn = lambda x: tf.einsum('nij,nj->ni', tf.constant(diag), x)  # noqa: E731
  summary = conditioning.log_condition_summary(fn, tf.ones((10, 2), tf.float64))
  assert [summary[f'jacobian/log_cond_p{p}'] for p in conditioning.PERCENTILES] == \
      pytest.approx([0, 1, 3, 5, 7, 9])
  assert summary['jacobian/log_cond_median'] == pytest.approx(4.5)


@pytest.fixture(scope='module')
def noisy_halves():
  images, _ = data.load_images('mnist', 'train[:256]')
  x1, _ = data.to_halves(images[:4], noise_std=0.05,
                         noise_seed=tf.constant([0, 1], tf.int64))
  return x1.numpy()


def test_residual_mlp_jacobian_matches_finite_differences(noisy_halves):
  # Large weights (stddev 0.05): a clearly non-linear map. float64 for exact differences.
  model = ResidualMLP(kernel_stddev=0.05, dtype='float64')
  x = noisy_halves[:2].astype(np.float64)
  jac = conditioning.input_jacobian(model, tf.constant(x)).numpy()
  assert jac.shape == (2, 392, 392)
  eps = 1e-6
  flat = x.reshape(2, -1)
  for n in range(2):
    plus = flat[n] + eps * np.eye(392)
    minus = flat[n] - eps * np.eye(392)
    out = model(tf.constant(np.concatenate([plus, minus]).reshape(-1, 14, 28, 1))).numpy()
    fd = (out[:392] - out[392:]).T / (2 * eps)  # fd[i, j] = d out_i / d x_j.
    np.testing.assert_allclose(jac[n], fd, atol=1e-6)
  assert np.max(np.abs(jac[0] - np.eye(392))) > 0.1  # Not the identity: a real test.


def test_residual_mlp_is_the_identity_at_init_and_has_the_paper_layers(noisy_halves):
  model = ResidualMLP(name='g1')
  x = tf.constant(noisy_halves)
  # Residual branches of ~1e-3 (392 inputs x stddev 1e-4): the identity up to 1e-2.
  np.testing.assert_allclose(model(x).numpy(), noisy_halves.reshape(4, -1), atol=1e-2)
  assert len(model.trainable_variables) == 10  # 5 x (kernel 392x392, bias 392).
  assert all(v.shape in ((392, 392), (392,)) for v in model.trainable_variables)
  summary = conditioning.log_condition_summary(model, x)
  assert 0 <= summary['jacobian/log_cond_p100'] < 0.05
  with pytest.raises(ValueError, match='392'):
    model(tf.zeros((2, 10)))


def test_mi_maximization_reports_the_conditioning_at_every_evaluation():
  halves = data.ImageHalves(noise_std=0.05, train_split='train[:256]',
                             probe_train_split='train[:256]', test_split='test[:128]')
  task = mi_maximization.MIMaximization(encoder=ResidualMLP, critic=critics.Bilinear, data=halves,
                              eval_batch_size=32, train_estimate_examples=128,
                              condition_number_examples=16)
  task.build(32, seed=0)
  results = task.evaluate(0)
  values = [results[f'jacobian/log_cond_p{p}'] for p in conditioning.PERCENTILES]
  assert values == sorted(values)
  assert 0 <= values[0] and values[-1] < 0.05  # Identity at init.
  assert results['jacobian/log_cond'].shape == (16,)
  # The inputs are the noisy probe-training halves: the same fixed draw as the probe's.
  x1_tr = halves.eval_split('train')[0]
  expected = conditioning.log_condition_summary(task.g1, tf.constant(x1_tr[:16]))
  np.testing.assert_allclose(results['jacobian/log_cond'], expected['jacobian/log_cond'])
  # Off by default.
  assert not any(k.startswith('jacobian/') for k in _evaluate_default(halves))


def _evaluate_default(halves):
  task = mi_maximization.MIMaximization(encoder=ResidualMLP, data=halves, eval_batch_size=32,
                              train_estimate_examples=128)
  task.build(32, seed=0)
  return task.evaluate(0)
