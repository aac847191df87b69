"""Critics map two batches of representations to the [b, B] score matrix (Sec. 3.2)."""

import numpy as np
import pytest
import tensorflow as tf

from mi_tf import critics


@pytest.mark.parametrize('cls', [critics.Bilinear, critics.Separable, critics.Concat])
def test_score_matrix_shape(cls):
  critic = cls()
  s = critic(tf.random.normal((5, 100)), tf.random.normal((8, 100)))
  assert s.shape == (5, 8) and s.dtype == tf.float32


def test_parameter_counts_match_the_paper():
  x = tf.zeros((2, 100))
  sizes = {}
  for cls in (critics.Bilinear, critics.Separable, critics.Concat):
    c = cls()
    c(x, x)
    sizes[cls.__name__] = sum(int(np.prod(v.shape)) for v in c.trainable_variables)
  assert sizes['Bilinear'] == 100 * 100
  assert sizes['Separable'] == 2 * (100 * 100 + 100 + 100 * 100 + 100)  # ~40k
  assert sizes['Concat'] == 200 * 200 + 200 + 200 + 1  # ~40k


def test_bilinear_is_x_w_y():
  c = critics.Bilinear()
  x, y = tf.random.normal((3, 4)), tf.random.normal((6, 4))
  s = c(x, y)
  np.testing.assert_allclose(s.numpy(), x.numpy() @ c.w.numpy() @ y.numpy().T, rtol=1e-5,
                             atol=1e-5)


def test_concat_equals_mlp_on_concatenated_pairs():
  """The broadcast first layer is the same function as a Dense on [x_i, y_j]."""
  c = critics.Concat(hidden_units=(7, 5))
  x, y = tf.random.normal((3, 4)), tf.random.normal((6, 2))
  s = c(x, y).numpy()
  w = np.concatenate([c.first_x.kernel.numpy(), c.first_y.kernel.numpy()], axis=0)
  for i in range(3):
    for j in range(6):
      pair = np.concatenate([x[i].numpy(), y[j].numpy()])[None]
      h = np.maximum(pair @ w + c.first_x.bias.numpy(), 0)
      np.testing.assert_allclose(s[i, j], c.rest(h[None]).numpy()[0, 0, 0], rtol=1e-5, atol=1e-5)
