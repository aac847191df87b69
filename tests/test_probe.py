"""The paper's linear probe: its min-max scaling is float32, as in the authors' code."""

import numpy as np

from mi_tf import probe


def test_a_feature_below_float32_resolution_is_constant_not_stretched():
  """A feature whose training range is below 10 float32 epsilons (here 1e-8, like the outputs
  of an invertible encoder at initialisation on pixels that are 0 in every training image)
  stays at about 0; a float64 scaling would stretch it to [0, 1]."""
  rng = np.random.default_rng(0)
  pixels = rng.uniform(size=(500, 3)).astype(np.float32)
  tiny = 1e-8 * rng.standard_normal((500, 1))
  train, test = probe.scaled_features(np.hstack([pixels, tiny]), np.hstack([pixels, tiny]))
  assert train.dtype == test.dtype == np.float64
  assert np.ptp(train[:, 3]) < 1e-6 and np.max(np.abs(test[:, 3])) < 1e-6
  np.testing.assert_allclose(train[:, :3].min(0), 0.0, atol=1e-7)
  np.testing.assert_allclose(train[:, :3].max(0), 1.0, atol=1e-6)


def test_the_probe_ignores_features_below_float32_resolution():
  """Appending noise-free sub-resolution copies of the label to pixel-like features changes
  nothing: with a float64 scaling the probe would read the label off them."""
  rng = np.random.default_rng(1)
  n = 2000
  labels = rng.integers(0, 10, size=n)
  weak = (labels[:, None] + 6.0 * rng.standard_normal((n, 5))).astype(np.float32)
  leak = 1e-9 * labels[:, None].astype(np.float64)
  base = probe.linear_probe(weak[:1500], labels[:1500], weak[1500:], labels[1500:])
  leaked = probe.linear_probe(np.hstack([weak, leak])[:1500], labels[:1500],
                              np.hstack([weak, leak])[1500:], labels[1500:])
  assert base['test_accuracy'] < 0.5
  assert abs(leaked['test_accuracy'] - base['test_accuracy']) < 0.02


def test_the_converged_probe_ignores_features_below_float32_resolution():
  """The fast L-BFGS probe on pixel-like features with sub-resolution columns appended (an
  invertible encoder at initialisation) equals the probe without them."""
  rng = np.random.default_rng(2)
  n = 1200
  labels = rng.integers(0, 10, size=n)
  weak = (labels[:, None] + 3.0 * rng.standard_normal((n, 6))).astype(np.float32)
  tiny = 1e-8 * rng.standard_normal((n, 4))
  base = probe.fit_probe(weak[:900], labels[:900], weak[900:], labels[900:], protocol='fast')
  more = probe.fit_probe(np.hstack([weak, tiny])[:900], labels[:900],
                         np.hstack([weak, tiny])[900:], labels[900:], protocol='fast')
  assert base['converged'] and more['converged']
  assert more['test_accuracy'] == base['test_accuracy'] > 0.3
