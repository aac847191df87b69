"""App. C: InfoNCE with a shared encoder and an inner-product critic is the K-pair loss of
metric learning (values and encoder gradients); the semi-hard triplet loss against a numpy
brute force; the parameter-free InnerProduct critic."""

import json
import math

import gin
import numpy as np
import pytest
import tensorflow as tf

from conftest import GIN_DIR, TINY_BINDINGS
from mi_tf import critics
from mi_tf import estimators
from mi_tf import launch  # Also registers the critics with gin.
from mi_tf import metric_learning
from mi_tf.tasks import mi_maximization


def _kpair_numpy(s):
  """Sohn (2016) Eq. 7 as written, in float64: mean_i log(1 + sum_{j != i} e^{S_ij - S_ii})."""
  s = np.asarray(s, np.float64)
  k = len(s)
  return np.mean([np.log1p(sum(np.exp(s[i, j] - s[i, i]) for j in range(k) if j != i))
                  for i in range(k)])


def _adversarial_scores():
  rng = np.random.default_rng(0)
  k = 16
  dominant = rng.standard_normal((k, k))
  dominant[:, 3] = 500.0  # One column dominates every row (its row's positive too).
  return {
      'huge positives': np.diag(np.full(k, 1e4)) + rng.standard_normal((k, k)),
      'huge negatives': np.full((k, k), 1e4) - np.diag(np.full(k, 2e4)),
      'all scores -1e4': np.full((k, k), -1e4),
      'ties (all equal)': np.full((k, k), 2.5),
      'one dominant column': dominant,
      'wide range': rng.uniform(-3e3, 3e3, (k, k)),
      'one pair': np.array([[7.0]]),
  }


@pytest.mark.parametrize('k, scale', [(2, 1.0), (8, 1.0), (64, 1.0), (64, 20.0)])
def test_infonce_is_log_k_minus_the_kpair_loss_on_random_scores(k, scale):
  s = scale * np.random.default_rng(k).standard_normal((k, k))
  for dtype in (tf.float32, tf.float64):
    scores = tf.constant(s, dtype)
    loss = metric_learning.kpair_loss(scores)
    np.testing.assert_allclose(float(estimators.infonce(scores)), math.log(k) - float(loss),
                               atol=1e-5, rtol=0)
  np.testing.assert_allclose(float(metric_learning.kpair_loss(tf.constant(s, tf.float64))),
                             _kpair_numpy(s), rtol=1e-10)


@pytest.mark.parametrize('name', sorted(_adversarial_scores()))
def test_the_identity_holds_on_adversarial_scores(name):
  s = _adversarial_scores()[name]
  k = len(s)
  scores = tf.constant(s, tf.float64)
  loss = float(metric_learning.kpair_loss(scores))
  assert math.isfinite(loss) and loss >= 0
  np.testing.assert_allclose(float(estimators.infonce(scores)), math.log(k) - loss, atol=1e-5,
                             rtol=0)
  expected = {'huge positives': 0.0, 'all scores -1e4': math.log(k),
              'ties (all equal)': math.log(k), 'one pair': 0.0,
              'huge negatives': 2e4 + math.log(max(k - 1, 1))}.get(name)
  if expected is not None:  # Closed forms (where exp overflows the literal formula).
    np.testing.assert_allclose(loss, expected, atol=1e-9)
  # float32 scores of the same matrix: the same loss to float32 rounding of 1e4-sized scores.
  np.testing.assert_allclose(float(metric_learning.kpair_loss(tf.constant(s, tf.float32))),
                             loss, rtol=1e-6, atol=1e-5 + 5e-7 * float(np.max(np.abs(s))))


def test_per_row_terms_are_eq_7_of_sohn_2016():
  s = np.random.default_rng(1).standard_normal((5, 5)) * 3
  rows = metric_learning.kpair_loss_per_row(tf.constant(s, tf.float64)).numpy()
  for i in range(5):
    np.testing.assert_allclose(rows[i], np.log1p(
        sum(np.exp(s[i, j] - s[i, i]) for j in range(5) if j != i)), rtol=1e-12)
  # Shifting one row changes nothing (only S_ij - S_ii enters); scaling the margins does.
  shifted = s + np.arange(5)[:, None]
  np.testing.assert_allclose(
      metric_learning.kpair_loss_per_row(tf.constant(shifted, tf.float64)).numpy(), rows,
      rtol=1e-12)


@pytest.mark.parametrize('encoder', ['dense', 'mlp'])
def test_kpair_gradients_equal_minus_infonce_gradients_with_a_shared_encoder(encoder):
  """App. C: one encoder g for both halves and f(x, y) = g(x)^T g(y); then minimising the
  K-pair loss and maximising I_NCE move g's weights the same way (their difference is log K)."""
  tf.keras.utils.set_random_seed(3)
  layers = {'dense': [tf.keras.layers.Dense(8)],
            'mlp': [tf.keras.layers.Dense(16, activation='relu'), tf.keras.layers.Dense(8)]}
  g = tf.keras.Sequential([tf.keras.Input((12,)), *layers[encoder]])
  critic = critics.InnerProduct()
  x = tf.random.normal((32, 12))
  y = x + 0.3 * tf.random.normal((32, 12))  # Two views of the same 32 examples.
  with tf.GradientTape(persistent=True) as tape:
    scores = critic(g(x), g(y))  # The same g on both halves.
    kpair = metric_learning.kpair_loss(scores)
    negative_infonce = -estimators.infonce(scores)
  np.testing.assert_allclose(float(kpair), float(negative_infonce) + math.log(32), atol=1e-5)
  grads_kpair = tape.gradient(kpair, g.trainable_variables)
  grads_nce = tape.gradient(negative_infonce, g.trainable_variables)
  assert len(grads_kpair) == len(layers[encoder]) * 2 and not critic.trainable_variables
  for a, b in zip(grads_kpair, grads_nce):
    assert float(tf.reduce_max(tf.abs(a))) > 1e-3  # A real gradient, not zeros on both sides.
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ triplet loss


def _triplet_numpy(anchor, positive, negatives, margin, squared):
  """Brute force: per anchor, every candidate checked in a Python loop."""
  anchor, positive = np.asarray(anchor, np.float64), np.asarray(positive, np.float64)
  default = negatives is None
  candidates = positive if default else np.asarray(negatives, np.float64)

  def dist(a, b):
    d = float(np.sum((a - b) ** 2))
    return d if squared else math.sqrt(d)

  terms, chosen, semi = [], [], []
  for i in range(len(anchor)):
    d_ap = dist(anchor[i], positive[i])
    options = [(dist(anchor[i], c), j) for j, c in enumerate(candidates)
               if not (default and j == i)]
    semi_hard = [(d, j) for d, j in options if d_ap < d < d_ap + margin]
    d_an, j = min(semi_hard) if semi_hard else min(options)
    terms.append(max(0.0, d_ap - d_an + margin))
    chosen.append(j)
    semi.append(bool(semi_hard))
  return np.array(terms), np.array(chosen), np.array(semi)


def _check_triplets(anchor, positive, negatives=None, margin=2.0, squared=True):
  terms, chosen, semi = metric_learning.triplet_terms(
      tf.constant(anchor, tf.float64), tf.constant(positive, tf.float64),
      None if negatives is None else tf.constant(negatives, tf.float64), margin, squared)
  expected = _triplet_numpy(anchor, positive, negatives, margin, squared)
  np.testing.assert_allclose(terms.numpy(), expected[0], atol=1e-9)
  np.testing.assert_array_equal(chosen.numpy(), expected[1])
  np.testing.assert_array_equal(semi.numpy(), expected[2])
  loss = metric_learning.triplet_loss(anchor, positive, negatives, margin, squared)
  np.testing.assert_allclose(float(loss), np.mean(expected[0]), atol=1e-9)
  return expected


@pytest.mark.parametrize('squared', [True, False])
def test_semi_hard_triplets_equal_the_brute_force_with_in_batch_negatives(squared):
  rng = np.random.default_rng(4)
  anchor = rng.standard_normal((24, 4))
  positive = anchor + 0.8 * rng.standard_normal((24, 4))
  terms, _, semi = _check_triplets(anchor, positive, margin=2.0 if squared else 0.7,
                                   squared=squared)
  assert 0 < semi.sum() < 24  # Both cases occur: semi-hard ones and the fallback.
  assert np.all(terms[semi] > 0)  # A semi-hard negative is inside the margin.


def test_semi_hard_triplets_equal_the_brute_force_with_given_negatives():
  rng = np.random.default_rng(5)
  anchor, positive = rng.standard_normal((10, 3)), rng.standard_normal((10, 3))
  _, _, semi = _check_triplets(anchor, positive, rng.standard_normal((15, 3)), margin=3.0)
  assert 0 < semi.sum() < 10


def test_a_batch_without_semi_hard_negatives_falls_back_to_the_hardest():
  rng = np.random.default_rng(6)
  anchor = rng.standard_normal((8, 5))
  # Positives far away: every other positive is nearer than its own -> all hard, none within
  # the band (d_ap, d_ap + margin); the closest (hardest) one is taken, terms >= margin.
  far = anchor + 10.0
  near = anchor[::-1] + 0.01 * rng.standard_normal((8, 5))
  positive = np.where(np.arange(8)[:, None] % 2 == 0, far, near)
  negatives = anchor + 0.1 * rng.standard_normal((8, 5))
  terms, chosen, semi = _check_triplets(anchor, far, negatives, margin=0.2)
  assert not semi.any() and np.all(terms >= 0.2)
  # The hardest candidate of anchor i is its own noisy copy.
  np.testing.assert_array_equal(chosen, np.arange(8))
  # Positives right on the anchors and negatives far: none semi-hard, every term 0.
  terms, _, semi = _check_triplets(anchor, anchor + 1e-3, anchor + 10.0, margin=0.2)
  assert not semi.any() and np.all(terms == 0)
  # In-batch negatives, mixed: some anchors without any semi-hard candidate.
  _check_triplets(anchor, positive, margin=0.2)


def test_triplet_loss_bad_inputs_are_value_errors():
  a = tf.zeros((4, 3))
  with pytest.raises(ValueError, match='same shape'):
    metric_learning.triplet_loss(a, tf.zeros((4, 2)))
  with pytest.raises(ValueError, match='at least 2 pairs'):
    metric_learning.triplet_loss(tf.zeros((1, 3)), tf.zeros((1, 3)))
  with pytest.raises(ValueError, match='embedding size'):
    metric_learning.triplet_loss(a, a, negatives=tf.zeros((5, 2)))
  with pytest.raises(ValueError, match='margin must be positive'):
    metric_learning.triplet_loss(a, a, margin=0.0)
  with pytest.raises(ValueError, match=r'\[n, D\]'):
    metric_learning.triplet_loss(tf.zeros((4,)), tf.zeros((4,)))


# ------------------------------------------------------------------ the critic


def test_inner_product_critic_is_x_y_transposed_without_weights():
  x, y = tf.random.normal((3, 6)), tf.random.normal((5, 6))
  c = critics.InnerProduct()
  s = c(x, y)
  assert s.shape == (3, 5) and s.dtype == tf.float32
  np.testing.assert_allclose(s.numpy(), x.numpy() @ y.numpy().T, rtol=1e-5, atol=1e-5)
  assert c.trainable_variables == [] and c.weights == []
  with pytest.raises(ValueError, match='same feature size, got 6 and 4'):
    critics.InnerProduct()(x, tf.zeros((5, 4)))


@gin.configurable
def _critic_of(critic=None):
  return critic


def test_inner_product_critic_is_gin_configurable_like_the_others():
  gin.parse_config("_critic_of.critic = @InnerProduct\nInnerProduct.name = 'ip'")
  critic = _critic_of()()
  assert isinstance(critic, critics.InnerProduct) and critic.name == 'ip'
  x = tf.random.normal((4, 3))
  np.testing.assert_allclose(critic(x, x).numpy(), x.numpy() @ x.numpy().T, rtol=1e-5,
                             atol=1e-5)


def test_a_shared_encoder_with_the_inner_product_critic_trains(tmp_path):
  """The metric-learning setting as a run: one encoder for both halves, f(x, y) = x^T y."""
  model_dir = tmp_path / 'run'
  final = launch.train_with_gin(
      str(model_dir), [str(GIN_DIR / 'sec3_2_critics_bilinear_infonce.gin')],
      TINY_BINDINGS + ('MIMaximization.shared_encoder = True',
                       'MIMaximization.critic = @InnerProduct'))
  assert final['step'] == 4 and math.isfinite(final['I_NCE/test'])
  info = json.loads((model_dir / 'run_info.json').read_text())
  assert info['task']['shared_encoder'] is True and info['task']['critic'] == 'InnerProduct'
  # One encoder's variables only: g2 is g1, and the critic has none.
  task = mi_maximization.MIMaximization(shared_encoder=True, critic=critics.InnerProduct)
  task.build(8, 0)
  assert task.g2 is task.g1
  assert len(task.variables) == len(task.g1.trainable_variables) == 6  # 3 Dense layers.
  with pytest.raises(ValueError, match='shared_encoder'):
    mi_maximization.MIMaximization(shared_encoder=True, encoder_g2=mi_maximization.MLP)


def test_triplet_row_offset_gives_the_global_batch_rows_of_a_replica():
  """Under tf.distribute a replica holds anchors [o, o + b) and all B positives: its terms are
  those rows of the whole batch's (own positive left out of the candidates)."""
  rng = np.random.default_rng(7)
  a = tf.math.l2_normalize(tf.constant(rng.standard_normal((12, 5))), axis=1)
  p = tf.math.l2_normalize(a + 0.5 * tf.constant(rng.standard_normal((12, 5))), axis=1)
  whole = [t.numpy() for t in metric_learning.triplet_terms(a, p, margin=0.5)]
  for o in (0, 4, 8):
    block = metric_learning.triplet_terms(a[o:o + 4], p[o:o + 4], p, margin=0.5, row_offset=o)
    for w, got in zip(whole, block):
      np.testing.assert_array_equal(got.numpy(), w[o:o + 4])
    assert not np.any(block[1].numpy() == np.arange(4) + o)  # Never the own positive.


def test_cosine_critic_is_normalised_inner_product_over_a_temperature():
  rng = np.random.default_rng(3)
  x, y = rng.standard_normal((4, 6)) * 50, rng.standard_normal((7, 6)) * 1e-3
  y[2] = 0.0  # A zero row scores 0 with every row.
  c = critics.Cosine(temperature=0.5)
  s = c(tf.constant(x, tf.float32), tf.constant(y, tf.float32)).numpy()
  norms = np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-300)
  ref = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (y / norms).T / 0.5
  np.testing.assert_allclose(s, ref, rtol=1e-5, atol=1e-5)
  assert np.all(s[:, 2] == 0) and np.all(np.abs(s) <= 2.0 + 1e-5) and c.weights == []
  for bad in (0.0, -1.0, float('nan'), True):
    with pytest.raises(ValueError, match='temperature must be a positive number'):
      critics.Cosine(temperature=bad)
  gin.parse_config('_critic_of.critic = @Cosine\nCosine.temperature = 0.25')
  critic = _critic_of()()
  assert isinstance(critic, critics.Cosine) and critic.temperature == 0.25
