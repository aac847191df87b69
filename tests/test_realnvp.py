"""The RealNVP encoder of Sec. 3.1 (mi_tf/encoders/realnvp.py) on real MNIST halves:
invertibility, log-det, trainability of every coupling, checkpoint and SavedModel round trips
of the weights and of the permutations, and the TFP caching pitfall."""

import numpy as np
import pytest
import tensorflow as tf

from mi_tf import data
from mi_tf import export as export_lib
from mi_tf.encoders import RealNVP

import keras

NUM_COUPLINGS = 30
NUM_VARIABLES = NUM_COUPLINGS * 3 * 2  # 30 couplings x 3 dense layers x (kernel, bias).


@pytest.fixture(scope='module')
def halves():
  images, _ = data.load_images('mnist', 'train[:256]')
  x1, x2 = data.to_halves(images[:64])
  return x1.numpy(), x2.numpy()


def _train(model, x, steps=3, learning_rate=1e-2):
  """A few Adam steps on a loss that moves every coupling (large lr: a non-trivial flow)."""
  target = tf.constant(np.random.default_rng(0).normal(size=(x.shape[0], 392)), tf.float32)
  optimizer = keras.optimizers.Adam(learning_rate)

  @tf.function
  def step(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(model(x, training=True) - target))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return grads

  for _ in range(steps):
    grads = step(tf.constant(x))
  return grads


def _inverse_error(model, x):
  flat = x.reshape(len(x), -1)
  y = model.forward(tf.constant(x)).numpy()
  x_back = model.inverse(tf.constant(y)).numpy()  # A new tensor: no TFP cache hit.
  return np.max(np.abs(x_back - flat)), y


@pytest.mark.parametrize('coupling', ['additive', 'affine'])
def test_inverse_of_forward_is_identity_at_init_and_after_training(coupling, halves):
  x1, _ = halves
  model = RealNVP(num_couplings=NUM_COUPLINGS, coupling=coupling, seed=1, name='g1')
  err, y_init = _inverse_error(model, x1)
  assert err < 1e-4
  _train(model, x1)
  err, y_trained = _inverse_error(model, x1)
  assert err < 1e-4
  # Training really changed the function (else the second check would be vacuous).
  assert np.max(np.abs(y_trained - y_init)) > 1e-2


def test_additive_flow_has_zero_log_det_and_starts_as_a_permutation(halves):
  x1, _ = halves
  model = RealNVP(num_couplings=NUM_COUPLINGS, coupling='additive', seed=2)
  np.testing.assert_array_equal(model.forward_log_det_jacobian(x1).numpy(), np.zeros(64))
  y = model(tf.constant(x1)).numpy()
  # Shifts are ~1e-12 at init: the output is the input, permuted.
  np.testing.assert_allclose(np.sort(y, axis=1), np.sort(x1.reshape(64, -1), axis=1),
                             atol=1e-6)
  _train(model, x1)
  np.testing.assert_array_equal(model.forward_log_det_jacobian(x1).numpy(), np.zeros(64))


def test_affine_log_det_matches_the_jacobian(halves):
  x1, _ = halves
  model = RealNVP(num_couplings=NUM_COUPLINGS, coupling='affine', seed=3)
  _train(model, x1, steps=2)
  x = tf.constant(x1[:2].reshape(2, -1))
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = model.forward(x)
  jac = tape.batch_jacobian(y, x)
  _, logdet = np.linalg.slogdet(jac.numpy().astype(np.float64))
  ldj = model.forward_log_det_jacobian(x).numpy()
  np.testing.assert_allclose(ldj, logdet, rtol=1e-3)
  # 30 couplings x 196 scales of ~softplus(0) = log 2 at init: a strong contraction.
  assert np.all(ldj < -1000)


def test_every_coupling_is_trainable_and_receives_a_gradient(halves):
  x1, _ = halves
  model = RealNVP(num_couplings=NUM_COUPLINGS, seed=4)
  assert len(model.trainable_variables) == NUM_VARIABLES
  assert [v.name for v in model.non_trainable_variables] == ['permutations']
  names = {v.path.split('/')[1] for v in model.trainable_variables}
  assert names == {f'coupling_{k:02d}' for k in range(NUM_COUPLINGS)}
  grads = _train(model, x1, steps=1)
  assert len(grads) == NUM_VARIABLES
  norms = [float(tf.norm(g)) for g in grads]
  assert all(n > 0 for n in norms), norms
  assert model.count_params() == 30 * (196 * 512 + 512 + 512 * 512 + 512 + 512 * 196 + 196) + 30 * 392


def test_same_eager_tensor_gives_fresh_output_after_training(halves):
  # PITFALLS 5: TFP caches bijector outputs per input tensor.
  x1, _ = halves
  model = RealNVP(num_couplings=NUM_COUPLINGS, seed=5)
  x = tf.constant(x1)
  before = model(x)
  _train(model, x1, steps=1)
  after = model(x)
  assert np.max(np.abs(after.numpy() - before.numpy())) > 1e-3


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
def test_checkpoint_and_saved_model_keep_every_variable_and_the_permutations(
    coupling, halves, tmp_path):
  x1, _ = halves
  model = RealNVP(num_couplings=NUM_COUPLINGS, coupling=coupling, seed=8, name='g1')
  _train(model, x1, steps=2)
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

  # SavedModel: same variables (counted in its variables checkpoint), same function.
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
