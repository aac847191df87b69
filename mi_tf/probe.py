"""The linear probe of the paper (Sec. 3, "Evaluation"): frozen features -> test accuracy.

Protocol (from the authors' Colab): features min-max scaled with statistics of the training
set, multinomial logistic regression with scikit-learn's SAGA solver, C=10, tol=0.1,
max_iter=100, fit on all 60k training images and scored on all 10k test images. With tol=0.1
SAGA stops after a few epochs, before convergence; that is the paper's protocol and the default.

``converged_probe`` (opt-in: ``fit_probe(..., protocol='converged')``, ``eval_probe.py
--probe=converged``) minimises the same objective on the same features to convergence with
full-batch L-BFGS in TensorFlow. ``protocol='fast'`` (``eval_probe.py --probe=fast``) is the
same solver stopped at a looser gradient tolerance (``FAST_TOLERANCE``): about 100-160 iterations
instead of about 560 on 60k x 392 pixels, within 0.1 point of the converged fit (measured in
BENCHMARKS.md, section 5, on pixels and on learned features).
"""

import functools
import time
import warnings

import gin
import numpy as np
import tensorflow as tf
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MinMaxScaler


# scikit-learn's MinMaxScaler treats a range below 10 epsilons of the dtype as constant.
_FLOAT32_RESOLUTION = 10 * float(np.finfo(np.float32).eps)


def scaled_features(train_features, test_features):
  """Features checked finite and min-max scaled IN FLOAT32 with the training statistics,
  returned as float64 for the solvers.

  The scaling is float32, as in the authors' code (their features are float32 and so is
  scikit-learn's MinMaxScaler on them): a feature whose training range is below 10 float32
  epsilons (1.2e-6) is treated as constant (scale 1, so it stays at about 0) instead of being
  stretched to [0, 1]. This matters for invertible encoders at initialisation: the 43 MNIST
  pixels of X1 that are 0 in every training image leave outputs with ranges of about 1e-8,
  which a float64 scaling stretched into informative-looking features (the step-0 RealNVP
  probed 86.47% against 84.82% on the pixels it is a near-permutation of).

  Args:
    train_features: [N, D]; test_features: [M, D].
  Returns:
    (scaled train [N, D], scaled test [M, D]), float64.
  Raises:
    FloatingPointError: if the features are not finite (in float32).
  """
  train_features = np.asarray(train_features, np.float32)
  test_features = np.asarray(test_features, np.float32)
  for name, f in (('train', train_features), ('test', test_features)):
    if not np.all(np.isfinite(f)):
      raise FloatingPointError(f'Linear probe: the {name} features contain NaN or inf '
                               '(in float32).')
  scaler = MinMaxScaler().fit(train_features)
  return (scaler.transform(train_features).astype(np.float64),
          scaler.transform(test_features).astype(np.float64))


@gin.configurable(denylist=['train_features', 'train_labels', 'test_features', 'test_labels'])
def linear_probe(train_features, train_labels, test_features, test_labels, C=10.0, tol=0.1,
                 max_iter=100, seed=0):
  """Fits the paper's linear probe and scores it.

  Args:
    train_features: [N, D] array; train_labels: [N] int.
    test_features: [M, D] array; test_labels: [M] int.
    C, tol, max_iter: LogisticRegression settings (paper: 10, 0.1, 100).
    seed: random_state of SAGA (its sampling order), for reproducible accuracies.

  Returns:
    dict with train_accuracy, test_accuracy (fractions), n_iter, seconds, feature_dim.

  Raises:
    FloatingPointError: if the features are not finite.
  """
  start = time.time()
  x_tr, x_te = scaled_features(train_features, test_features)
  clf = LogisticRegression(solver='saga', C=C, tol=tol, max_iter=max_iter, random_state=seed)
  with warnings.catch_warnings():
    # Expected with the paper's tol=0.1 / max_iter=100; the protocol is deliberately loose.
    warnings.simplefilter('ignore', ConvergenceWarning)
    clf.fit(x_tr, train_labels)
  return {
      'train_accuracy': float(clf.score(x_tr, train_labels)),
      'test_accuracy': float(clf.score(x_te, test_labels)),
      'n_iter': int(np.max(clf.n_iter_)),
      'seconds': time.time() - start,
      'feature_dim': int(x_tr.shape[1]),
  }


PROTOCOLS = ('paper', 'converged', 'fast')

# Gradient sup-norm tolerance of the 'fast' protocol. On 60k x 392 MNIST pixels (BENCHMARKS.md,
# section 5) L-BFGS reaches 1e-4 after about 150 iterations; test accuracy is then within
# 0.05 point of the fit converged to 1e-6 (562 iterations). Chosen from that measurement.
FAST_TOLERANCE = 1e-4


def _multinomial_objective(features, labels, penalty):
  """(w [(D + 1) * K] -> (objective, gradient)) of L2-regularised multinomial regression.

  objective(w) = mean_i [logsumexp(z_i) - z_{i, y_i}] + 1/2 sum_d penalty_d ||W_d||^2,
  z_i = x_i W + b, with W [D, K] and the unpenalised intercept b [K] packed in w (W row-major,
  then b); ``penalty`` [D, 1]. With penalty = 1 / (C N) this is scikit-learn's
  LogisticRegression objective C * sum_i CE_i + ||W||^2 / 2 divided by C N: same minimiser.
  A per-feature penalty lets ``converged_probe`` solve the problem in standardised
  coordinates (a change of variables, so the same optimum).
  """
  # Static sizes where known; dynamic ones when the cached tf.function of _lbfgs_fit_fn
  # (reduce_retracing) has seen several feature widths in one process and traces [None, None].
  dim = features.shape[1] if features.shape[1] is not None else tf.shape(features)[1]
  num_classes = labels.shape[1] if labels.shape[1] is not None else tf.shape(labels)[1]

  def value_and_gradient(w):
    weights = tf.reshape(w[:dim * num_classes], [dim, num_classes])
    bias = w[dim * num_classes:]
    logits = tf.matmul(features, weights) + bias
    n = tf.cast(tf.shape(features)[0], w.dtype)
    # Analytic gradient (one matmul each way); cheaper than a tape inside the L-BFGS loop.
    log_p = tf.nn.log_softmax(logits)
    value = (-tf.reduce_sum(labels * log_p) / n
             + 0.5 * tf.reduce_sum(penalty * weights * weights))
    residual = (tf.exp(log_p) - labels) / n  # [N, K]
    grad_w = tf.matmul(features, residual, transpose_a=True) + penalty * weights
    grad_b = tf.reduce_sum(residual, axis=0)
    return value, tf.concat([tf.reshape(grad_w, [-1]), grad_b], axis=0)

  return value_and_gradient


def lbfgs_armijo(value_and_gradient, start, tolerance, max_iterations, num_correction_pairs=20,
                 max_backtracks=40):
  """Minimises a smooth convex function with L-BFGS and an Armijo backtracking line search.

  Graph code (call it inside a tf.function): the iterations are one ``tf.while_loop``.
  Nocedal and Wright (2006), Algorithm 7.4 (two-loop recursion, H0 = gamma I with
  gamma = s^T y / y^T y) and Algorithm 3.1 (backtracking from step 1, c1 = 1e-4, halving).
  On a well-scaled convex problem the unit step is almost always accepted, so it costs about
  ONE function-and-gradient evaluation per iteration, where tfp's Hager-Zhang line search
  spends about three (measured in BENCHMARKS.md).

  Args:
    value_and_gradient: w [P] -> (scalar, [P]).
    start: [P] initial point.
    tolerance: stop when max |gradient| <= tolerance.
    max_iterations: iteration cap (int32 scalar).
    num_correction_pairs: memory m.
    max_backtracks: halvings tried per line search before giving up (stops the loop).

  Returns:
    (position [P], value, num_iterations, num_evaluations, converged, max |gradient|).
  """
  m = num_correction_pairs
  dtype = start.dtype
  size = tf.shape(start)[0]
  value, grad = value_and_gradient(start)
  c1 = tf.constant(1e-4, dtype)

  def direction(grad, s_hist, y_hist, rho, k):
    """-H_k grad by the two-loop recursion over the min(k, m) newest pairs (ring buffer)."""
    # Unrolled over the m slots (XLA needs static loop bounds); slots i >= n are masked out.
    n = tf.minimum(k, m)
    q = grad
    alphas = [None] * m
    for i in range(m):
      j = (k - 1 - i) % m
      a = tf.where(i < n, rho[j] * tf.tensordot(s_hist[j], q, 1), tf.zeros([], dtype))
      alphas[i] = a
      q = q - a * y_hist[j]
    last = (k - 1) % m
    gamma = tf.cond(
        k > 0,
        lambda: tf.tensordot(s_hist[last], y_hist[last], 1)
        / tf.tensordot(y_hist[last], y_hist[last], 1),
        lambda: 1.0 / tf.maximum(tf.norm(grad), tf.constant(1e-30, dtype)))
    r = gamma * q
    for i in reversed(range(m)):
      j = (k - 1 - i) % m
      b = rho[j] * tf.tensordot(y_hist[j], r, 1)
      r = r + tf.where(i < n, alphas[i] - b, tf.zeros([], dtype)) * s_hist[j]
    return -r

  def cond(it, k, x, value, grad, s_hist, y_hist, rho, evals, failed):
    return tf.logical_and(
        tf.logical_and(it < max_iterations, tf.reduce_max(tf.abs(grad)) > tolerance),
        tf.logical_not(failed))

  def body(it, k, x, value, grad, s_hist, y_hist, rho, evals, failed):
    d = direction(grad, s_hist, y_hist, rho, k)
    slope = tf.tensordot(grad, d, 1)
    # Not a descent direction (numerical trouble): restart from steepest descent.
    d = tf.where(slope < 0, d, -grad / tf.maximum(tf.norm(grad), tf.constant(1e-30, dtype)))
    slope = tf.tensordot(grad, d, 1)
    step = tf.constant(1.0, dtype)
    new_value, new_grad = value_and_gradient(x + step * d)
    tries = tf.constant(1)
    while (tf.logical_or(tf.logical_not(tf.math.is_finite(new_value)),
                         new_value > value + c1 * step * slope)
           and tries < max_backtracks):
      step = 0.5 * step
      new_value, new_grad = value_and_gradient(x + step * d)
      tries += 1
    accepted = tf.logical_and(tf.math.is_finite(new_value), new_value <= value + c1 * step * slope)
    s = step * d
    y = new_grad - grad
    sy = tf.tensordot(s, y, 1)
    keep = tf.logical_and(accepted, sy > 1e-12 * tf.tensordot(y, y, 1))
    slot = k % m
    s_hist = tf.where(keep, tf.tensor_scatter_nd_update(s_hist, [[slot]], [s]), s_hist)
    y_hist = tf.where(keep, tf.tensor_scatter_nd_update(y_hist, [[slot]], [y]), y_hist)
    rho = tf.where(keep, tf.tensor_scatter_nd_update(rho, [[slot]], [1.0 / sy]), rho)
    k = tf.where(keep, k + 1, k)
    x = tf.where(accepted, x + s, x)
    value = tf.where(accepted, new_value, value)
    grad = tf.where(accepted, new_grad, grad)
    return (it + 1, k, x, value, grad, s_hist, y_hist, rho, evals + tries,
            tf.logical_not(accepted))

  init = (tf.constant(0), tf.constant(0), start, value, grad, tf.zeros([m, size], dtype),
          tf.zeros([m, size], dtype), tf.zeros([m], dtype), tf.constant(1), tf.constant(False))
  it, _, x, value, grad, _, _, _, evals, _ = tf.while_loop(cond, body, init)
  grad_max = tf.reduce_max(tf.abs(grad))
  return x, value, it, evals, grad_max <= tolerance, grad_max


SOLVERS = ('armijo', 'tfp')


@functools.lru_cache(maxsize=8)
def _lbfgs_fit_fn(solver, dtype_name, num_correction_pairs, jit_compile):
  """One tf.function that runs the WHOLE L-BFGS optimisation in the graph (a while-loop).

  solver: 'armijo' (``lbfgs_armijo``) or 'tfp' (``tfp.optimizer.lbfgs_minimize``, Hager-Zhang
  line search). Cached per argument tuple so repeated probes reuse the traced graph.
  """
  if solver not in SOLVERS:
    raise ValueError(f'Unknown solver {solver!r}; choose one of {SOLVERS}.')
  dtype = tf.as_dtype(dtype_name)

  @tf.function(jit_compile=jit_compile, reduce_retracing=True)
  def fit(features, onehot, penalty, tolerance, max_iterations):
    dim, num_classes = tf.shape(features)[1], tf.shape(onehot)[1]
    objective = _multinomial_objective(features, onehot, penalty)
    start = tf.zeros([(dim + 1) * num_classes], dtype)
    if solver == 'armijo':
      return lbfgs_armijo(objective, start, tolerance, max_iterations, num_correction_pairs)
    import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top  (only here)
    result = tfp.optimizer.lbfgs_minimize(
        objective, start, tolerance=tolerance, max_iterations=max_iterations,
        num_correction_pairs=num_correction_pairs, f_relative_tolerance=0.0)
    return (result.position, result.objective_value, result.num_iterations,
            result.num_objective_evaluations, result.converged,
            tf.reduce_max(tf.abs(result.objective_gradient)))

  return fit


@gin.configurable(denylist=['train_features', 'train_labels', 'test_features', 'test_labels'])
def converged_probe(train_features, train_labels, test_features, test_labels, C=10.0,
                    tolerance=1e-6, max_iterations=3000, num_correction_pairs=20,
                    dtype='float64', jit_compile=False, solver='armijo'):
  """A fast CONVERGED linear probe: the paper's model, solved to its optimum.

  Same features (min-max scaled with the training statistics, scikit-learn's MinMaxScaler) and
  same objective as ``linear_probe`` (multinomial logistic regression, L2 on the weights with
  scikit-learn's C, unpenalised intercept), but minimised to convergence with full-batch
  L-BFGS (``lbfgs_armijo``, or ``tfp.optimizer.lbfgs_minimize``), the whole optimisation in
  ONE tf.function (a graph while-loop: no Python per iteration). The paper's SAGA protocol
  (tol=0.1) stops after a few epochs; this one converges to the optimum that a converged
  scikit-learn fit approaches (tests/test_probe_fast.py): about 30 s on 60k x 392 pixels on
  2 CPU cores, against about 550 s for SAGA run to convergence (BENCHMARKS.md).

  Args:
    train_features: [N, D] array; train_labels: [N] int in [0, K).
    test_features: [M, D] array; test_labels: [M] int.
    C: inverse regularisation strength, as in scikit-learn (paper: 10).
    tolerance: stop when the sup-norm of the gradient of the per-example objective (see
      ``_multinomial_objective``) is below this.
    max_iterations: L-BFGS iteration cap (``converged`` is False in the result if reached).
    num_correction_pairs: L-BFGS memory.
    dtype: 'float64' (default) or 'float32'.
    jit_compile: compile the whole optimisation with XLA.
    solver: 'armijo' (``lbfgs_armijo``: about one evaluation per iteration) or 'tfp'
      (``tfp.optimizer.lbfgs_minimize``); both minimise the same objective.

  Returns:
    dict with train_accuracy, test_accuracy (fractions), n_iter, converged, objective (the
    per-example objective at the solution), grad_max (sup-norm of its gradient), seconds,
    feature_dim.

  Raises:
    FloatingPointError: if the features are not finite.
  """
  start = time.time()
  x_tr, x_te = scaled_features(train_features, test_features)
  train_labels = np.asarray(train_labels, np.int64)
  test_labels = np.asarray(test_labels, np.int64)
  num_classes = int(max(train_labels.max(), test_labels.max())) + 1
  # Solve in standardised coordinates u = (x - mu) / s: with W = V / s (rows) and
  # b = c - mu W the logits are unchanged and the penalty ||W||^2 / (C N) becomes
  # sum_d ||V_d||^2 / (C N s_d^2). The optimum is the same; L-BFGS needs far fewer iterations.
  mu = x_tr.mean(axis=0)
  sd = x_tr.std(axis=0)
  # Constant features, and those below float32 resolution that ``scaled_features`` left at
  # about 0 (an SD of about 1e-9 would make their penalty 1e18 times the others' and the
  # problem hopelessly ill-conditioned): their weight is about 0 at the optimum either way.
  sd[sd < _FLOAT32_RESOLUTION] = 1.0
  u_tr = ((x_tr - mu) / sd).astype(dtype)
  penalty = (1.0 / (C * len(x_tr) * sd**2)).astype(dtype)[:, None]
  onehot = np.eye(num_classes, dtype=dtype)[train_labels]
  fit = _lbfgs_fit_fn(solver, dtype, int(num_correction_pairs), bool(jit_compile))
  tdtype = tf.as_dtype(dtype)
  position, value, n_iter, n_eval, converged, grad_max = fit(
      tf.constant(u_tr), tf.constant(onehot), tf.constant(penalty),
      tf.constant(tolerance, tdtype), tf.constant(int(max_iterations), tf.int32))
  position = position.numpy().astype(np.float64)
  dim = x_tr.shape[1]
  weights = position[:dim * num_classes].reshape(dim, num_classes) / sd[:, None]
  bias = position[dim * num_classes:] - mu @ weights

  def accuracy(x, y):
    return float(np.mean(np.argmax(x @ weights + bias, axis=1) == y))

  return {
      'train_accuracy': accuracy(x_tr, train_labels),
      'test_accuracy': accuracy(x_te, test_labels),
      'n_iter': int(n_iter), 'n_evaluations': int(n_eval), 'converged': bool(converged),
      'objective': float(value),
      'grad_max': float(grad_max), 'seconds': time.time() - start,
      'feature_dim': int(dim),
  }


def fit_probe(train_features, train_labels, test_features, test_labels, protocol='paper',
              seed=0):
  """The probe selected by ``protocol``: 'paper' (``linear_probe``, the default everywhere),
  'converged' (``converged_probe``, gradient tolerance 1e-6) or 'fast' (``converged_probe``
  stopped at ``FAST_TOLERANCE``). Same returned keys (the L-BFGS ones add some)."""
  if protocol == 'paper':
    return linear_probe(train_features, train_labels, test_features, test_labels, seed=seed)
  if protocol == 'converged':
    return converged_probe(train_features, train_labels, test_features, test_labels)
  if protocol == 'fast':
    return converged_probe(train_features, train_labels, test_features, test_labels,
                           tolerance=FAST_TOLERANCE)
  raise ValueError(f'Unknown probe protocol {protocol!r}; choose one of {PROTOCOLS}.')


# ------------------------------------------------------------------ k-NN probe
# The k-NN probe that representation-learning suites report next to the linear one (the
# weighted variant of Wu et al., 2018, "Unsupervised Feature Learning via Non-Parametric
# Instance Discrimination", Sec. 3.4, as in solo-learn's k-NN; VISSL and lightly report the
# same). No training: each test example takes the labels of its k most cosine-similar training
# examples. It complements the linear probe: InfoNCE with an inner-product critic is a
# metric-learning loss (paper, Sec. 4 and App. C; mi_tf.metric_learning), whose natural probe
# is a nearest-neighbour one.

KNN_K = 20
KNN_METRIC = 'cosine'

# Every probe the probe command fits: the linear protocols (``fit_probe``) and the k-NN probe.
KNN = 'knn'
PROBES = PROTOCOLS + (KNN,)


def _knn_inputs(train_features, train_labels, test_features, test_labels, k, temperature,
                batch_size):
  """The k-NN probe's inputs checked and converted: (train [N, D] float32, train labels [N]
  int32, test [M, D] float32, test labels [M] int32 or None if None); one ValueError names
  what is wrong."""
  arrays = {}
  for name, f in (('train', train_features), ('test', test_features)):
    f = np.asarray(f)
    if f.ndim != 2 or f.shape[0] < 1 or f.shape[1] < 1:
      raise ValueError(f'k-NN probe: the {name} features must be a non-empty [N, D] array, got '
                       f'shape {list(f.shape)}.')
    if f.dtype.kind not in 'biuf':
      raise ValueError(f'k-NN probe: the {name} features must be numbers, got dtype {f.dtype}.')
    with np.errstate(over='ignore'):  # Beyond float32: inf, reported just below.
      f = f.astype(np.float32)
    if not np.all(np.isfinite(f)):
      raise ValueError(f'k-NN probe: the {name} features contain NaN or inf (in float32).')
    arrays[name] = f
  train, test = arrays['train'], arrays['test']
  if train.shape[1] != test.shape[1]:
    raise ValueError(f'k-NN probe: the train features have dimension {train.shape[1]} but the '
                     f'test features {test.shape[1]}.')
  labels = {'test': None}
  for name, y, n in (('train', train_labels, len(train)), ('test', test_labels, len(test))):
    if y is None and name == 'test':
      continue
    y = np.asarray(y)
    if y.shape != (n,):
      raise ValueError(f'k-NN probe: the {name} labels must have shape [{n}] (one per {name} '
                       f'example), got {list(y.shape)}.')
    if y.dtype.kind not in 'iu' or (n and y.min() < 0):
      raise ValueError(f'k-NN probe: the {name} labels must be non-negative integers, got '
                       f'dtype {y.dtype}' + (f', min {y.min()}.' if y.dtype.kind in 'iu' else '.'))
    labels[name] = y.astype(np.int32)
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(train):
    raise ValueError(f'k-NN probe: k must be an integer in [1, {len(train)}] (the number of '
                     f'training examples), got {k!r}.')
  if temperature is not None and (
      isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number))
      or not (np.isfinite(temperature) and temperature > 0)):
    raise ValueError(f'k-NN probe: temperature must be None (majority vote) or a positive '
                     f'number (weights exp(similarity / temperature), e.g. 0.07), got '
                     f'{temperature!r}.')
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
      or batch_size < 1:
    raise ValueError(f'k-NN probe: batch_size must be a positive integer, got {batch_size!r}.')
  return train, labels['train'], test, labels['test']


@functools.lru_cache(maxsize=8)
def _knn_block_fn(k, num_classes, weighted, leave_one_out):
  """One tf.function: the predicted labels [b] of a block of L2-normalised queries [b, D].

  Arguments of the function: queries [b, D], train [N, D] (L2-normalised), train labels [N]
  int32, temperature (scalar float32; unused unless ``weighted``), self indices [b] int32 (the
  training index of each query, masked out of its neighbours; unused unless
  ``leave_one_out``).
  """

  @tf.function(reduce_retracing=True)
  def predict(queries, train, train_labels, temperature, self_index):
    sims = tf.matmul(queries, train, transpose_b=True)  # [b, N] cosine similarities.
    if leave_one_out:
      rows = tf.range(tf.shape(queries)[0])
      sims = tf.tensor_scatter_nd_update(
          sims, tf.stack([rows, self_index], axis=1),
          tf.fill(tf.shape(rows), tf.constant(-np.inf, sims.dtype)))
    # Equal similarities: the lower training index first (tf.math.top_k's documented order).
    top, index = tf.math.top_k(sims, k=k, sorted=True)  # [b, k]
    neighbour_labels = tf.gather(train_labels, index)  # [b, k]
    if weighted:
      # exp(s / T), divided by the row's largest exp(s_max / T) (same argmax, no overflow).
      weights = tf.exp((top - top[:, :1]) / temperature)
    else:
      weights = tf.ones_like(top)
    votes = tf.reduce_sum(tf.one_hot(neighbour_labels, num_classes) * weights[..., None],
                          axis=1)  # [b, C]
    # Ties between classes: the smallest label among those with the most votes (explicitly:
    # tf.argmax does not specify which maximum it returns).
    best = votes >= tf.reduce_max(votes, axis=1, keepdims=True)
    return tf.reduce_min(tf.where(best, tf.range(num_classes), num_classes), axis=1)

  return predict


def _unit_rows(x):
  """Rows of x [N, D] divided by their L2 norms, computed in float64 (no overflow of the
  squares of large finite float32 features), returned as float32; all-zero rows stay zero."""
  x = np.asarray(x, np.float64)
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _knn_predictions(train, train_labels, queries, k, temperature, batch_size,
                     leave_one_out=False):
  """Predicted labels [M] (numpy int32) of checked queries [M, D] (``_knn_inputs``), block by
  block; ``leave_one_out``: the queries are train[:M], each one's own row left out."""
  num_classes = int(train_labels.max()) + 1
  fn = _knn_block_fn(int(k), num_classes, temperature is not None, bool(leave_one_out))
  train_t = tf.constant(_unit_rows(train))
  labels_t = tf.constant(train_labels)
  temperature_t = tf.constant(1.0 if temperature is None else float(temperature), tf.float32)
  out = []
  for i in range(0, len(queries), int(batch_size)):
    block = tf.constant(_unit_rows(queries[i:i + int(batch_size)]))
    self_index = tf.range(i, i + int(block.shape[0]), dtype=tf.int32)
    out.append(fn(block, train_t, labels_t, temperature_t, self_index).numpy())
  return np.concatenate(out)


def knn_predict(train_features, train_labels, test_features, k=KNN_K, temperature=None,
                batch_size=1000):
  """The labels [M] that ``knn_probe`` predicts for test_features [M, D] (same arguments, same
  checks and rules: see there)."""
  train, y_tr, test, _ = _knn_inputs(train_features, train_labels, test_features, None, k,
                                     temperature, batch_size)
  return _knn_predictions(train, y_tr, test, k, temperature, batch_size)


@gin.configurable(denylist=['train_features', 'train_labels', 'test_features', 'test_labels'])
def knn_probe(train_features, train_labels, test_features, test_labels, k=KNN_K,
              temperature=None, batch_size=1000, train_examples=1000):
  """k-nearest-neighbour probe with cosine similarity on frozen features.

  Each test example is classified by the labels of the ``k`` training examples of highest
  cosine similarity (features L2-normalised; an all-zero feature vector stays zero, similarity
  0 to everything, as with scikit-learn's ``normalize``):

  - ``temperature=None``: majority vote, ties between classes broken towards the SMALLEST
    label (the rule of scikit-learn's KNeighborsClassifier(metric='cosine'), whose
    predictions it equals: tests/test_knn_probe.py);
  - ``temperature=T``: each neighbour votes with weight exp(s / T), s its cosine similarity
    (Wu et al., 2018, Sec. 3.4, as solo-learn's k-NN; T = 0.07 is the usual value); ties,
    rare with real weights, break the same way.

  Neighbours of equal similarity at the k-th place: the lower training index is taken.

  The similarities are computed for blocks of ``batch_size`` test rows (a [batch_size, N]
  float32 matrix at a time, 240 MB at the default 1000 against 60k training examples: the
  full 10k x 60k matrix is never built). TensorFlow rather than numpy: on 60k x 100 training
  features and 10k test queries on this project's 2 CPU cores (busy with training runs), a
  1000-row block took about 1.1 s (matmul) + 0.8 s (tf.math.top_k) against 1.8 s (numpy
  matmul) + 2.2 s (np.argpartition, which moreover leaves the order of equal similarities
  unspecified); the whole 10k queries 18 s against 23 s. Blocks of 250 or 500 rows were
  slower (25 s, 20 s), of 2000 rows slightly faster (15 s) for twice the memory.

  Args:
    train_features: [N, D] array; train_labels: [N] int (labels in [0, C)).
    test_features: [M, D] array; test_labels: [M] int.
    k: number of neighbours, in [1, N] (default 20).
    temperature: None (majority vote) or T > 0 (weighted votes exp(s / T)).
    batch_size: test rows per block of similarities.
    train_examples: the train accuracy is LEAVE-ONE-OUT on the first ``train_examples``
      training examples (each classified by its k nearest OTHER training examples, against
      all N); 0, or k = N (too few others), omits it (train_accuracy None).

  Returns:
    dict with test_accuracy, train_accuracy (leave-one-out, see above; None if omitted),
    train_examples (how many it scored), k, temperature, metric ('cosine'), batch_size,
    seconds, feature_dim.

  Raises:
    ValueError: k < 1 or k > N, features that are not [N, D] with the same D or not finite,
      labels that are not one non-negative integer per example, temperature <= 0, batch_size
      < 1.
  """
  start = time.time()
  train, y_tr, test, y_te = _knn_inputs(train_features, train_labels, test_features,
                                        test_labels, k, temperature, batch_size)
  test_accuracy = float(np.mean(
      _knn_predictions(train, y_tr, test, k, temperature, batch_size) == y_te))
  loo = min(int(train_examples), len(train)) if k < len(train) else 0
  train_accuracy = None
  if loo > 0:
    train_accuracy = float(np.mean(_knn_predictions(
        train, y_tr, train[:loo], k, temperature, batch_size, leave_one_out=True) == y_tr[:loo]))
  return {
      'test_accuracy': test_accuracy, 'train_accuracy': train_accuracy, 'train_examples': loo,
      'k': int(k), 'temperature': None if temperature is None else float(temperature),
      'metric': KNN_METRIC, 'batch_size': int(batch_size), 'seconds': time.time() - start,
      'feature_dim': int(train.shape[1]),
  }
