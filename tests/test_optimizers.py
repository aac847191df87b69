"""mi_tf.optimizers.FusedAdam: Keras's Adam, updated by TF's fused kernel.

Same trajectory as keras.optimizers.Adam (up to float32 rounding), same optimizer variables (so
checkpoints are interchangeable), and it runs inside a MirroredStrategy's update.
"""

import logging

import numpy as np
import pytest
import tensorflow as tf
import keras

from mi_tf.optimizers import AUTHORS_EPSILON
from mi_tf.optimizers import FusedAdam


def _problem(seed=0, steps=50):
  rng = np.random.default_rng(seed)
  init = [rng.normal(size=(30, 20)).astype(np.float32), rng.normal(size=(20,)).astype(np.float32)]
  grads = [[rng.normal(size=w.shape).astype(np.float32) for w in init] for _ in range(steps)]
  return init, grads


def _train(optimizer, init, grads):
  variables = [tf.Variable(w) for w in init]

  @tf.function
  def step(g):
    optimizer.apply_gradients(zip(g, variables))

  for g in grads:
    step([tf.constant(x) for x in g])
  return variables


@pytest.mark.parametrize('learning_rate', [1e-3, 1e-1])
def test_same_trajectory_as_keras_adam(learning_rate):
  init, grads = _problem()
  ref = _train(keras.optimizers.Adam(learning_rate, epsilon=AUTHORS_EPSILON), init, grads)
  fused = _train(FusedAdam(learning_rate), init, grads)
  for r, f, w in zip(ref, fused, init):
    moved = np.max(np.abs(r.numpy() - w))
    assert moved > 10 * learning_rate  # 50 steps of about lr each: the weights really moved.
    np.testing.assert_allclose(f.numpy(), r.numpy(), rtol=0, atol=1e-4 * moved)  # float32 rounding


def test_checkpoints_are_interchangeable_with_keras_adam(tmp_path):
  init, grads = _problem(seed=1, steps=5)
  keras_opt = keras.optimizers.Adam(1e-2)
  variables = _train(keras_opt, init, grads)
  path = tf.train.Checkpoint(optimizer=keras_opt, w=variables).save(str(tmp_path / 'ckpt'))

  fused = FusedAdam(1e-2)
  fresh = [tf.Variable(tf.zeros_like(w)) for w in init]
  fused.build(fresh)
  tf.train.Checkpoint(optimizer=fused, w=fresh).restore(path).assert_consumed()
  assert int(fused.iterations.numpy()) == 5
  # iterations, learning_rate, 2 momentums, 2 velocities.
  assert len(keras_opt.variables) == len(fused.variables) == 6
  for a, b in zip(keras_opt.variables, fused.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_runs_under_mirrored_strategy():
  # One replica here (this process has one logical CPU); the Sec. 4 toy trains with FusedAdam
  # on 2 replicas in tests/test_toy_mirrored.py.
  strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
  init, grads = _problem(seed=2, steps=3)
  with strategy.scope():
    variables = [tf.Variable(w) for w in init]
    optimizer = FusedAdam(1e-2)
    optimizer.build(variables)

  @tf.function
  def step(g):
    def replica_fn():
      scale = 1.0 / strategy.num_replicas_in_sync  # Keras sums over replicas.
      optimizer.apply_gradients([(gi * scale, v) for gi, v in zip(g, variables)])
    strategy.run(replica_fn)

  for g in grads:
    step([tf.constant(x) for x in g])
  ref = _train(keras.optimizers.Adam(1e-2, epsilon=AUTHORS_EPSILON), init, grads)
  for v, r in zip(variables, ref):
    np.testing.assert_allclose(v.numpy(), r.numpy(), atol=1e-5)


def test_default_epsilon_is_the_authors_and_decides_steps_on_tiny_gradients():
  """At a gradient of 1e-9 (the RealNVP shift networks at initialisation) Adam's first step
  is lr * sqrt(1 - b2) / (1 - b1) * m / (sqrt(v) + eps) with m = (1 - b1) g and
  sqrt(v) = sqrt(1 - b2) |g|: about 0.0030 lr with the authors' epsilon 1e-8, ten times the
  step of Keras's default 1e-7."""
  assert FusedAdam().epsilon == AUTHORS_EPSILON == 1e-8
  lr, g = 1e-3, 1e-9
  steps = {}
  for eps in (1e-8, 1e-7):
    w = tf.Variable([0.0])
    FusedAdam(lr, **({} if eps == 1e-8 else {'epsilon': eps})).apply_gradients(
        [(tf.constant([g]), w)])
    steps[eps] = -float(w.numpy()[0])
    root = (1 - 0.999) ** 0.5
    expected = lr * root / (1 - 0.9) * (1 - 0.9) * g / (root * g + eps)
    assert steps[eps] == pytest.approx(expected, rel=1e-4)
  assert steps[1e-8] / steps[1e-7] > 8


def test_every_task_takes_adam_epsilon_from_gin(tmp_path):
  import gin  # pylint: disable=g-import-not-at-top
  from conftest import GIN_DIR, TINY_BINDINGS  # pylint: disable=g-import-not-at-top
  from mi_tf import launch  # pylint: disable=g-import-not-at-top
  for gin_file, task_name in (('sec3_2_critics_bilinear_infonce.gin', 'MIMaximization'),
                              ('sec4_noniid.gin', 'GaussianToy'),
                              ('baseline_supervised_mlp.gin', 'SupervisedBaseline'),
                              ('sec3_1_adversarial.gin', 'AdversarialInvertible')):
    for binding, expected in (((), 1e-8), ((f'{task_name}.adam_epsilon = 1e-7',), 1e-7)):
      launch.parse_gin([str(GIN_DIR / gin_file)], TINY_BINDINGS + binding)
      task = gin.query_parameter('train.task').scoped_configurable_fn()
      task.build(16, 0)
      optimizers = [v for k, v in task.trackables().items() if 'optimizer' in k]
      assert optimizers and all(o.epsilon == expected for o in optimizers), (gin_file, binding)
      gin.clear_config()


class _KerasWithOtherSlots(keras.optimizers.Adam):
  """Keras's Adam as a release might change it: the slots in dicts keyed by the variable's
  path, ``_get_variable_index`` returning that key. Keras's own update still works on it;
  FusedAdam's checked assumptions (integer index into lists) do not hold."""

  def build(self, var_list):
    if self.built:
      return
    super().build(var_list)
    keys = [self._get_variable_index(v) for v in var_list]
    self._momentums = {str(k): m for k, m in zip(keys, self._momentums)}
    self._velocities = {str(k): v for k, v in zip(keys, self._velocities)}

  def _get_variable_index(self, variable):
    index = super()._get_variable_index(variable)
    return str(index) if isinstance(self._momentums, dict) else index


class _FusedAdamOnChangedKeras(FusedAdam, _KerasWithOtherSlots):
  pass


def _count_fused_kernel_calls(monkeypatch):
  calls = []
  kernel = tf.raw_ops.ResourceApplyAdam

  def counting(**kwargs):
    calls.append(kwargs['var'])
    return kernel(**kwargs)

  monkeypatch.setattr(tf.raw_ops, 'ResourceApplyAdam', counting)
  return calls


def _train_watched(make_optimizer, seed, steps, monkeypatch, caplog):
  """Trains ``make_optimizer()`` on a problem, counting fused-kernel calls and catching the
  optimizer's log. -> (optimizer, weights, init, grads, kernel calls, mi_tf.optimizers records)."""
  init, grads = _problem(seed=seed, steps=steps)
  calls = _count_fused_kernel_calls(monkeypatch)
  with caplog.at_level(logging.WARNING, logger='mi_tf.optimizers'):
    optimizer = make_optimizer()
    got = _train(optimizer, init, grads)
  records = [r for r in caplog.records if r.name == 'mi_tf.optimizers']
  return optimizer, got, init, grads, calls, records


def test_changed_private_attributes_warn_once_and_fall_back_to_keras_update(caplog,
                                                                           monkeypatch):
  changed, got, init, grads, calls, warnings = _train_watched(
      lambda: _FusedAdamOnChangedKeras(1e-2), 3, 5, monkeypatch, caplog)
  assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING  # Once, at build.
  message = warnings[0].getMessage()
  assert f'Keras {keras.__version__} changed Adam' in message
  assert "falling back to Keras's own Adam update (same formula, slower)" in message
  assert changed.fused is False and not calls  # The fused kernel never ran.
  ref = _train(keras.optimizers.Adam(1e-2, epsilon=AUTHORS_EPSILON), init, grads)
  for g, r, w in zip(got, ref, init):
    assert np.max(np.abs(r.numpy() - w)) > 1e-2  # Both really moved.
    np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=0, atol=1e-6)


def test_a_missing_private_attribute_is_found_at_build():
  optimizer = FusedAdam(1e-2)
  variables = [tf.Variable(np.ones((3, 2), np.float32)), tf.Variable(np.zeros(2, np.float32))]
  keras.optimizers.Adam.build(optimizer, variables)  # Keras's build alone: not checked yet.
  assert optimizer._private_attributes_problem(variables) is None
  del optimizer._velocities
  assert 'AttributeError' in optimizer._private_attributes_problem(variables)


def test_intact_private_attributes_use_the_fused_kernel_without_a_warning(caplog,
                                                                           monkeypatch):
  optimizer, got, init, grads, calls, records = _train_watched(
      lambda: FusedAdam(1e-2), 4, 3, monkeypatch, caplog)
  assert not records
  assert optimizer.fused is True
  # One kernel per variable in each trace (tf.function traces twice when the first call
  # creates the optimizer's variables).
  assert calls and len(calls) % len(init) == 0
  ref = _train(keras.optimizers.Adam(1e-2, epsilon=AUTHORS_EPSILON), init, grads)
  for g, r in zip(got, ref):
    np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=0, atol=1e-5)
