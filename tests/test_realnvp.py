"""The RealNVP encoder of Sec. 3.1 (mi_tf/encoders/realnvp.py) on real MNIST halves:
invertibility, log-det, trainability of every coupling, checkpoint and SavedModel round trips
of the weights and of the permutations, and the TFP caching pitfall."""

import numpy as np
import pytest
import tensorflow as tf

from mi_tf import data
from mi_tf import evaluation
from mi_tf import export as export_lib
from mi_tf.encoders import MLP
from mi_tf.encoders import RealNVP

import keras

NUM_COUPLINGS = 30
NUM_VARIABLES = NUM_COUPLINGS * 3 * 2  # 30 couplings x 3 dense layers x (kernel, bias).


@pytest.fixture(scope='module')
def halves():
  images, _ = data.load_images('mnist', 'train[:256]')
  x1, x2 = data.to_halves(images[:16])
  return x1.numpy(), x2.numpy()


def _train(model, x, steps=2, learning_rate=1e-2):
  """A few eager Adam steps on a loss that moves every coupling (large lr: a non-trivial
  flow); returns the gradients of the first step."""
  target = tf.constant(np.random.default_rng(0).normal(size=(x.shape[0], 392)), tf.float32)
  optimizer = keras.optimizers.Adam(learning_rate)
  first = None
  for _ in range(steps):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(model(tf.constant(x), training=True) - target))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    first = grads if first is None else first
  return first


def _inverse_error(model, x):
  flat = x.reshape(len(x), -1)
  y = model.forward(tf.constant(x)).numpy()
  x_back = model.inverse(tf.constant(y)).numpy()  # A new tensor: no TFP cache hit.
  return float(np.max(np.abs(x_back - flat))), y


class Trained:
  """A 30-coupling RealNVP measured at init, then after 2 training steps (shared by tests)."""

  def __init__(self, coupling, x, seed):
    self.model = RealNVP(num_couplings=NUM_COUPLINGS, coupling=coupling, seed=seed, name='g1')
    self.x = x
    self.init_error, self.y_init = _inverse_error(self.model, x)
    self.ldj_init = self.model.forward_log_det_jacobian(x).numpy()
    x_tensor = tf.constant(x)  # The SAME eager tensor before and after training.
    self.out_before = self.model(x_tensor).numpy()
    self.grads = _train(self.model, x)
    self.out_after_same_tensor = self.model(x_tensor).numpy()
    self.trained_error, self.y_trained = _inverse_error(self.model, x)


@pytest.fixture(scope='module')
def trained(halves):
  x1, _ = halves
  return {'additive': Trained('additive', x1, seed=1), 'affine': Trained('affine', x1, seed=2)}


@pytest.mark.parametrize('coupling', ['additive', 'affine'])
def test_inverse_of_forward_is_identity_at_init_and_after_training(coupling, trained):
  t = trained[coupling]
  assert t.init_error < 1e-4
  assert t.trained_error < 1e-4
  # Training really changed the function (else the second check would be vacuous).
  assert np.max(np.abs(t.y_trained - t.y_init)) > 1e-2


def test_additive_flow_has_zero_log_det_and_starts_as_a_permutation(trained):
  t = trained['additive']
  np.testing.assert_array_equal(t.ldj_init, np.zeros(len(t.x)))
  np.testing.assert_array_equal(t.model.forward_log_det_jacobian(t.x).numpy(),
                                np.zeros(len(t.x)))
  # Shifts are ~1e-12 at init: the output is the input, permuted.
  np.testing.assert_allclose(np.sort(t.y_init, axis=1),
                             np.sort(t.x.reshape(len(t.x), -1), axis=1), atol=1e-6)


def test_affine_log_det_matches_the_jacobian(trained):
  t = trained['affine']
  # 30 couplings x 196 scales of ~softplus(0) = log 2 at init: a strong contraction.
  np.testing.assert_allclose(t.ldj_init, 30 * 196 * np.log(np.log(2.0)), rtol=1e-4)
  x = tf.constant(t.x[:2].reshape(2, -1))
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = t.model.forward(x)
  jac = tape.batch_jacobian(y, x)
  _, logdet = np.linalg.slogdet(jac.numpy().astype(np.float64))
  ldj = t.model.forward_log_det_jacobian(x).numpy()
  np.testing.assert_allclose(ldj, logdet, rtol=1e-3)
  assert np.max(np.abs(ldj - t.ldj_init[:2])) > 1e-2  # Training changed the scales.


@pytest.mark.parametrize('coupling', ['additive', 'affine'])
def test_every_coupling_is_trainable_and_receives_a_gradient(coupling, trained):
  model, grads = trained[coupling].model, trained[coupling].grads
  assert len(model.trainable_variables) == NUM_VARIABLES
  assert [v.name for v in model.non_trainable_variables] == ['permutations']
  assert {v.path.split('/')[0] for v in model.trainable_variables} == {
      f'coupling_{k:02d}' for k in range(NUM_COUPLINGS)}
  assert len(grads) == NUM_VARIABLES
  norms = [float(tf.norm(g)) for g in grads]
  assert all(n > 0 for n in norms), norms
  out = 196 if coupling == 'additive' else 392
  per_coupling = 196 * 512 + 512 + 512 * 512 + 512 + 512 * out + out
  assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 30 * per_coupling


@pytest.mark.parametrize('coupling', ['additive', 'affine'])
def test_same_eager_tensor_gives_fresh_output_after_training(coupling, trained):
  # TFP caches bijector outputs per input tensor.
  t = trained[coupling]
  assert np.max(np.abs(t.out_after_same_tensor - t.out_before)) > 1e-2
  np.testing.assert_allclose(t.out_after_same_tensor, t.y_trained, atol=1e-6)


def test_permutations_come_from_the_seed():
  np.random.seed(0)
  a, b = RealNVP(num_couplings=3, seed=None), RealNVP(num_couplings=3, seed=None)
  np.random.seed(0)
  a2 = RealNVP(num_couplings=3, seed=None)
  np.testing.assert_array_equal(a.permutations.numpy(), a2.permutations.numpy())
  assert not np.array_equal(a.permutations.numpy(), b.permutations.numpy())  # g1 != g2.
  c, c2 = RealNVP(num_couplings=3, seed=7), RealNVP(num_couplings=3, seed=7)
  np.testing.assert_array_equal(c.permutations.numpy(), c2.permutations.numpy())
  for p in c.permutations.numpy():
    np.testing.assert_array_equal(np.sort(p), np.arange(392))


@pytest.mark.parametrize('coupling', ['additive', 'affine'])
def test_checkpoint_keeps_every_variable_and_the_permutations(coupling, trained, tmp_path):
  model, x1 = trained[coupling].model, trained[coupling].x
  expected = model(tf.constant(x1)).numpy()

  # Checkpoint: restore into a model with other permutations and other initial weights.
  path = tf.train.Checkpoint(g1=model).save(str(tmp_path / 'ckpt' / 'ckpt'))
  stored = [name for name, _ in tf.train.list_variables(path) if name.startswith('g1/')]
  assert sum('coupling_' in n for n in stored) == NUM_VARIABLES
  assert sum('permutations' in n for n in stored) == 1
  other = RealNVP(num_couplings=NUM_COUPLINGS, coupling=coupling, seed=9, name='g1')
  assert not np.array_equal(other.permutations.numpy(), model.permutations.numpy())
  tf.train.Checkpoint(g1=other).restore(path).assert_existing_objects_matched()
  np.testing.assert_array_equal(other.permutations.numpy(), model.permutations.numpy())
  for a, b in zip(model.variables, other.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_allclose(other(tf.constant(x1)).numpy(), expected, atol=1e-6)


def test_saved_model_keeps_every_variable_and_the_permutations(trained, tmp_path):
  model, x1 = trained['additive'].model, trained['additive'].x
  expected = model(tf.constant(x1)).numpy()
  # Same variables (counted in its variables checkpoint), same function.
  export_dir = str(tmp_path / 'export')
  export_lib.export_encoder(model, export_dir, x1.shape[1:])
  reader = tf.train.load_checkpoint(export_dir + '/variables/variables')
  saved = reader.get_variable_to_shape_map()
  kernels_and_biases = [n for n in saved if n.endswith('.ATTRIBUTES/VARIABLE_VALUE')
                        and ('kernel' in n or 'bias' in n)]
  assert len(kernels_and_biases) == NUM_VARIABLES
  perm_names = [n for n in saved if 'permutations' in n]
  assert len(perm_names) == 1
  np.testing.assert_array_equal(reader.get_tensor(perm_names[0]), model.permutations.numpy())
  encode, input_shape = export_lib.load_encoder(export_dir)
  assert tuple(input_shape) == x1.shape[1:]
  np.testing.assert_allclose(encode(x1).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize('coupling', ['additive', 'affine'])
def test_invertibility_metrics_measure_the_trained_flow(coupling, trained):
  t = trained[coupling]
  metrics = evaluation.invertibility_metrics(t.model, t.x, batch_size=7)
  assert metrics['invertibility/max_reconstruction_error'] == pytest.approx(t.trained_error,
                                                                            abs=1e-6)
  assert metrics['invertibility/max_reconstruction_error'] < 1e-4
  ldj = metrics['invertibility/mean_log_det_jacobian']
  if coupling == 'additive':
    assert ldj == 0.0
  else:  # Trained affine couplings change the volume.
    assert abs(ldj) > 1e-6
    assert ldj == pytest.approx(float(np.mean(t.model.forward_log_det_jacobian(t.x))),
                                rel=1e-5)


def test_invertibility_metrics_catch_a_wrong_inverse_and_skip_other_encoders(halves):
  x1, _ = halves

  class NotInverted:
    def forward(self, x):
      return 2.0 * tf.reshape(x, [tf.shape(x)[0], -1])

    def inverse(self, y):
      return y  # Wrong: should halve.

    def forward_log_det_jacobian(self, x):
      return tf.fill([tf.shape(x)[0]], 392 * float(np.log(2.0)))

  metrics = evaluation.invertibility_metrics(NotInverted(), x1)
  assert metrics['invertibility/max_reconstruction_error'] > 0.1
  assert metrics['invertibility/mean_log_det_jacobian'] == pytest.approx(392 * np.log(2.0))
  assert evaluation.invertibility_metrics(MLP(hidden_units=(8,), output_dim=4), x1) == {}
