"""The target objective of Sec. 3.3, min |I_EST - t|: its gradient changes sign at t."""

import numpy as np
import pytest
import tensorflow as tf

from mi_tf import critics
from mi_tf import data as data_lib
from mi_tf.tasks import mi_maximization
from mi_tf.encoders import MLP


@pytest.mark.parametrize('target', [2.0, 4.0])
def test_objective_gradient_flips_sign_around_t(target):
  task = mi_maximization.MIMaximization(target=target)
  for i_est, sign in ((target - 1.5, -1.0), (target - 0.01, -1.0), (target + 0.01, 1.0),
                      (target + 2.0, 1.0)):
    v = tf.Variable(i_est)
    with tf.GradientTape() as tape:
      loss = task.objective(v)
    assert float(loss) == pytest.approx(abs(i_est - target), abs=1e-6)
    assert float(tape.gradient(loss, v)) == sign


def test_without_target_the_objective_maximises():
  task = mi_maximization.MIMaximization(target=None)
  v = tf.Variable(3.0)
  with tf.GradientTape() as tape:
    loss = task.objective(v)
  assert float(loss) == -3.0 and float(tape.gradient(loss, v)) == -1.0


def _small_task(target, estimator):
  halves = data_lib.ImageHalves(train_split='train[:512]', probe_train_split='train[:512]',
                                test_split='test[:256]')
  small = lambda name: MLP(hidden_units=(32,), output_dim=8, name=name)
  task = mi_maximization.MIMaximization(encoder=small, critic=critics.Bilinear,
                                        estimator=estimator, target=target,
                                        learning_rate=1e-3, data=halves)
  tf.keras.utils.set_random_seed(0)
  task.build(64, seed=0)
  batch = next(iter(task.dataset_fn(64, 0, 0)(None)))
  return task, batch


def _i_est(task, batch):
  z1, z2 = task.g1(batch['x1']), task.g2(batch['x2'])
  return float(tf.reduce_mean(task.bound.per_row(task.critic(z1, z2))))


@pytest.mark.parametrize('estimator', ['infonce', 'nwj'])
def test_parameter_gradients_are_opposite_on_either_side_of_t(estimator):
  task, batch = _small_task(0.0, estimator)
  i0 = _i_est(task, batch)
  grads = {}
  for name, t in (('below_t', i0 + 1.0), ('above_t', i0 - 1.0)):
    task.target = t
    with tf.GradientTape() as tape:
      z1, z2 = task.g1(batch['x1']), task.g2(batch['x2'])
      i_est = tf.reduce_mean(task.bound.per_row(task.critic(z1, z2)))
      loss = task.objective(i_est)
    grads[name] = tape.gradient(loss, task.variables)
  for below, above in zip(grads['below_t'], grads['above_t']):
    np.testing.assert_allclose(below.numpy(), -above.numpy(), rtol=1e-5, atol=1e-7)
  assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads['below_t'])


@pytest.mark.parametrize('direction', [1.0, -1.0])
def test_training_steps_move_i_est_towards_t(direction):
  """A target above the current I_EST raises it; a target below lowers it (same batch)."""
  task, batch = _small_task(0.0, 'infonce')
  i0 = _i_est(task, batch)
  task.target = i0 + direction
  for _ in range(5):
    out = task.train_step(batch)
    assert float(out['finite']) == 1.0
  i1 = _i_est(task, batch)
  assert (i1 - i0) * direction > 0.0
  assert abs(i1 - task.target) < abs(i0 - task.target)
