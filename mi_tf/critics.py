"""Critics f(x, y) that score every pair of two batches of representations (Sec. 3.2).

Each critic is a Keras layer called as ``critic(x, y)`` with x: [b, dx] and y: [B, dy]; it
returns the score matrix S: [b, B], ``S[i, j] = f(x_i, y_j)``, which the estimators in
``mi_tf.estimators`` turn into I_NCE or I_NWJ. Sizes follow Sec. 3.2 / App. A of the paper.

Plain Keras: no gin here (``mi_tf.launch`` makes the critics configurable for gin files).

Under mixed precision (``train.precision = 'mixed_bfloat16'``) a critic computes in bfloat16
and returns its scores in the variable dtype, float32 (``_scores``): the estimators' logsumexp
and exp, the loss and every logged estimate are float32.
"""

import keras


def _scores(layer, scores):
  """The score matrix in the layer's variable dtype (float32 under mixed precision)."""
  return keras.ops.cast(scores, layer.dtype_policy.variable_dtype)


class Bilinear(keras.layers.Layer):
  """Bilinear critic f(x, y) = x^T W y (no bias); W is [dx, dy], built from the inputs."""

  def build(self, x_shape, y_shape=None):
    y_shape = x_shape if y_shape is None else y_shape
    self.w = self.add_weight(name='w', shape=(int(x_shape[-1]), int(y_shape[-1])),
                             initializer='glorot_uniform')

  def call(self, x, y):
    return _scores(self, keras.ops.matmul(keras.ops.matmul(x, self.w), keras.ops.transpose(y)))


class Separable(keras.layers.Layer):
  """Separable critic f(x, y) = phi1(x)^T phi2(y).

  Each phi is an MLP with ``hidden_units`` ReLU units and a linear layer of ``output_dim``
  (paper: 100 and 100, about 40k parameters together at feature size 100).
  """

  def __init__(self, hidden_units=100, output_dim=100, **kwargs):
    super().__init__(**kwargs)
    self.phi1 = keras.Sequential([keras.layers.Dense(hidden_units, activation='relu'),
                                  keras.layers.Dense(output_dim)], name='phi1')
    self.phi2 = keras.Sequential([keras.layers.Dense(hidden_units, activation='relu'),
                                  keras.layers.Dense(output_dim)], name='phi2')

  def call(self, x, y):
    return _scores(self, keras.ops.matmul(self.phi1(x), keras.ops.transpose(self.phi2(y))))


class Concat(keras.layers.Layer):
  """Concat ("MLP") critic f(x, y) = phi([x, y]) on all b x B pairs.

  phi has ReLU hidden layers of sizes ``hidden_units`` and a scalar linear output: Sec. 3.2
  uses one layer of 200 units (about 40k parameters at feature size 100), Sec. 4 uses five of
  10 units on scalars. The first layer on the concatenation, W [x_i; y_j] + b, equals
  W_x x_i + W_y y_j + b: each side is projected once per batch and the two are broadcast to
  [b, B, h], so the [b, B, dx + dy] concatenation is never built (same function, same
  parameter count as one Dense on the concatenation).
  """

  def __init__(self, hidden_units=(200,), **kwargs):
    super().__init__(**kwargs)
    hidden_units = tuple(hidden_units)
    if not hidden_units:
      raise ValueError('Concat critic needs at least one hidden layer.')
    self.first_x = keras.layers.Dense(hidden_units[0], name='first_x')  # W_x and b.
    self.first_y = keras.layers.Dense(hidden_units[0], use_bias=False, name='first_y')
    self.rest = keras.Sequential(
        [keras.layers.Dense(h, activation='relu') for h in hidden_units[1:]]
        + [keras.layers.Dense(1)], name='rest')

  def call(self, x, y):
    hx = self.first_x(x)[:, None, :]  # [b, 1, h]
    hy = self.first_y(y)[None, :, :]  # [1, B, h]
    return _scores(self, keras.ops.squeeze(self.rest(keras.ops.relu(hx + hy)), axis=-1))


class InnerProduct(keras.layers.Layer):
  """Inner-product critic f(x, y) = x^T y: no parameters, S = x @ y^T ([b, B]).

  With ONE encoder shared by both inputs, InfoNCE with this critic is the multi-class K-pair
  loss of metric learning (paper, Sec. 4 and App. C: I_NCE = log K - L_K-pair; see
  ``mi_tf.metric_learning``). Both representations must have the same size.
  """

  @staticmethod
  def _check_dims(x_shape, y_shape):
    dx, dy = x_shape[-1], y_shape[-1]
    if dx is not None and dy is not None and int(dx) != int(dy):
      raise ValueError(f'InnerProduct critic: x and y must have the same feature size, got '
                       f'{int(dx)} and {int(dy)} (use Bilinear, Separable or Concat for '
                       'different sizes).')

  def build(self, x_shape, y_shape=None):
    self._check_dims(x_shape, x_shape if y_shape is None else y_shape)

  def call(self, x, y):
    self._check_dims(x.shape, y.shape)
    return _scores(self, keras.ops.matmul(x, keras.ops.transpose(y)))


class Cosine(InnerProduct):
  """Cosine critic f(x, y) = x^T y / (||x|| ||y|| T): no parameters, S [b, B] in [-1/T, 1/T].

  The inner product of L2-normalised representations over a temperature T (SimCLR's
  NT-Xent critic; Chen et al. 2020, Sec. 2.1, T = 0.1 here), for encoders trained on the unit
  sphere (the triplet loss of ``mi_tf.tasks.metric.MetricLearning`` normalises as FaceNet
  does, so the raw features' norms are untrained). I_NCE of this critic is at most
  log K - log(1 + (K - 1) e^{-2/T}) nats (positives at 1/T, negatives at -1/T). An all-zero
  row scores 0 with every column.
  """

  def __init__(self, temperature=0.1, **kwargs):
    super().__init__(**kwargs)
    if isinstance(temperature, bool) or not float(temperature) > 0:
      raise ValueError(f'Cosine critic: temperature must be a positive number, got '
                       f'{temperature!r}.')
    self.temperature = float(temperature)

  def call(self, x, y):
    self._check_dims(x.shape, y.shape)
    x = keras.ops.cast(x, 'float32')
    y = keras.ops.cast(y, 'float32')
    x = x / keras.ops.maximum(keras.ops.norm(x, axis=-1, keepdims=True), 1e-12)
    y = y / keras.ops.maximum(keras.ops.norm(y, axis=-1, keepdims=True), 1e-12)
    return _scores(self, keras.ops.matmul(x, keras.ops.transpose(y)) / self.temperature)

  def get_config(self):
    return dict(super().get_config(), temperature=self.temperature)
