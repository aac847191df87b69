"""Metric-learning losses on score and embedding matrices: the K-pair loss and the triplet loss.

Sec. 4 and App. C of Tschannen et al. (ICLR 2020) argue that InfoNCE is a metric-learning
loss. With ONE encoder g shared by both views and the inner-product critic
f(x, y) = g(x)^T g(y) (``mi_tf.critics.InnerProduct``), the score matrix of a batch of K
positive pairs is S[i, j] = g(x_i)^T g(y_j), and

  I_NCE = (1/K) sum_i log( e^{S[i,i]} / ((1/K) sum_j e^{S[i,j]}) )
        = log K - (1/K) sum_i log( 1 + sum_{j != i} e^{S[i,j] - S[i,i]} )
        = log K - L_K-pair(S),

where L_K-pair is the multi-class N-pair loss of Sohn (2016, "Improved Deep Metric Learning
with Multi-class N-pair Loss Objective", Eq. 7; "K-pair" in the paper): maximising I_NCE IS
minimising that loss (tests/test_metric_learning.py checks the values and the encoder
gradients). The triplet loss with semi-hard negative mining (Schroff et al., 2015, FaceNet,
Eq. 1 and Sec. 3.2) is the other classic loss of the family. ``mined_infonce_per_row`` is
InfoNCE over K columns per row, the positive and K - 1 negatives mined among the batch's
(random ones, or the hardest: the highest-scoring, as metric learning mines them).

Every per-row function takes the ``row_offset`` of ``mi_tf.estimators`` (row i's positive is
column i + row_offset of a replica's [b, B] block of the global batch).

Pure math like ``mi_tf.estimators``: TensorFlow ops only, no gin, no Keras.
"""

import math

import tensorflow as tf


def kpair_loss_per_row(scores, row_offset=0):
  """Per-row terms log(1 + sum_{j != i+o} exp(S[i, j] - S[i, i+o])) of the K-pair loss; [b].

  Computed as softplus(logsumexp_{j != i+o}(S[i, j] - S[i, i+o])) (log(1 + e^a) =
  softplus(a)): finite for scores of any size; 0 for K = 1 (no negative).

  Args:
    scores: float tensor [b, K], ``scores[i, j] = f(x_i, y_j)``: a replica's b rows of the
      global batch against all K columns ([K, K] on one device, positives on the diagonal).
    row_offset: column of row 0's positive (``mi_tf.distribute.replica_row_offset``; 0 on
      one device), as in ``mi_tf.estimators``: row i's positive is column i + row_offset.
  Returns:
    Tensor [b]; their mean over the K rows of all replicas is the K-pair loss, and
    log K - term_i is row i's InfoNCE term.
  """
  scores = tf.convert_to_tensor(scores)
  is_positive = _positive_mask(scores, row_offset)
  positive = _positive_scores(scores, row_offset)
  margins = scores - positive[:, None]  # S[i, j] - S[i, i+o]
  off_positive = tf.where(is_positive, tf.constant(-math.inf, scores.dtype), margins)
  return tf.math.softplus(tf.reduce_logsumexp(off_positive, axis=1))


def _positive_scores(scores, row_offset):
  """S[i, i + row_offset] for every row i; [b]."""
  cols = tf.range(tf.shape(scores)[0]) + tf.cast(row_offset, tf.int32)
  return tf.gather(scores, cols, axis=1, batch_dims=1)


def _positive_mask(scores, row_offset):
  """True at each row's positive column i + row_offset; bool [b, K]."""
  b = tf.shape(scores)[0]
  return tf.cast(tf.one_hot(tf.range(b) + tf.cast(row_offset, tf.int32), tf.shape(scores)[1],
                            dtype=tf.int32), tf.bool)


def kpair_loss(scores):
  """The multi-class K-pair loss (Sohn, 2016, Eq. 7) of a square score matrix; a scalar.

  L = (1/K) sum_i log(1 + sum_{j != i} exp(S[i, j] - S[i, i])), and I_NCE(S) = log K - L
  (paper, App. C; ``mi_tf.estimators.infonce``).

  Args:
    scores: float tensor [K, K] (positives on the diagonal), e.g. the inner products
      g(x_i)^T g(y_j) of a shared encoder's embeddings (``critics.InnerProduct``).
  Returns:
    Scalar tensor, >= 0.
  """
  return tf.reduce_mean(kpair_loss_per_row(scores))


def _as_matrix(name, x):
  x = tf.convert_to_tensor(x)
  if x.shape.rank is not None and x.shape.rank != 2:
    raise ValueError(f'triplet_loss: {name} must be [n, D] embeddings, got shape {x.shape}.')
  return x


def pairwise_distances(a, b, squared=True):
  """Euclidean distances between the rows of a [n, D] and b [m, D]; [n, m].

  ||a_i - b_j||^2 = ||a_i||^2 - 2 a_i^T b_j + ||b_j||^2, clipped at 0 (rounding); the square
  root (``squared=False``) of exact zeros stays 0 with a zero gradient.
  """
  d = (tf.reduce_sum(a * a, axis=1)[:, None] - 2.0 * tf.matmul(a, b, transpose_b=True)
       + tf.reduce_sum(b * b, axis=1)[None, :])
  d = tf.maximum(d, 0.0)
  return d if squared else _safe_sqrt(d)


def _safe_sqrt(d):
  """sqrt(d) for d >= 0, with sqrt(0) = 0 and a zero (not infinite) gradient there."""
  zero = tf.equal(d, 0.0)
  return tf.where(zero, tf.zeros_like(d), tf.sqrt(tf.where(zero, tf.ones_like(d), d)))


def triplet_terms(anchor, positive, negatives=None, margin=0.2, squared=True, row_offset=None):
  """Per-anchor triplet terms with semi-hard negative mining in the batch (FaceNet).

  Triplet i is (anchor_i, positive_i, n*), with d_ap = D(anchor_i, positive_i) and the
  negative n* chosen among the candidates c_j (``negatives``; by default the OTHER positives
  positive_j, j != i: the in-batch negatives that the K-pair loss and InfoNCE also compare
  against):

  - semi-hard (Schroff et al., 2015, Sec. 3.2: "further away from the anchor than the
    positive exemplar, but still hard ... inside the margin"): candidates with
    d_ap < D(anchor_i, c_j) < d_ap + margin; n* is the one CLOSEST to the anchor;
  - none semi-hard: n* is the hardest negative, the candidate closest to the anchor (a hard
    one, d_an <= d_ap, if any; else all are beyond the margin and the term is 0).

  term_i = max(0, d_ap - d_an* + margin) (FaceNet Eq. 1). D is the squared Euclidean
  distance (FaceNet; ``squared=False``: Euclidean); the embeddings are used as given
  (FaceNet L2-normalises them in the network).

  The fallback differs from TF Addons' ``triplet_semihard_loss`` (deprecated, not used
  here), which takes the closest candidate farther than the positive even beyond the margin
  (term 0) and, when no candidate is farther than the positive, the FARTHEST one. Its pairs
  also come from labels (every same-label pair is anchor-positive) rather than from
  the rows of two views.

  Args:
    anchor: [B, D] embeddings; positive: [B, D], row i the positive of anchor i.
    negatives: None (candidates: positive_j, j != i; needs B >= 2) or [M, D] candidates
      shared by every anchor.
    row_offset: with ``negatives``, None (every candidate is a negative) or the index of
      anchor 0's own positive among the candidates: candidate i + row_offset is left out for
      anchor i. That is the global batch under tf.distribute: a replica's b anchors and
      positives, ``negatives`` = the positives of ALL replicas [B, D]
      (``mi_tf.distribute.cross_replica_concat``), ``row_offset`` =
      ``mi_tf.distribute.replica_row_offset(b)``; the terms are then those of the rows
      [o, o + b) of ``triplet_terms`` on the whole batch.
    margin: alpha > 0 (FaceNet: 0.2 on unit-norm embeddings with squared distances).
    squared: squared Euclidean distances (default) or Euclidean.
  Returns:
    (terms [B], chosen [B] int32: the index of n* among the candidates (positive's rows, or
     negatives' rows), semi_hard [B] bool: whether n* is semi-hard). Among candidates at
     exactly equal distances the chosen index is any one of them (same term).
  Raises:
    ValueError: shapes that are not [B, D] / [M, D] with the same D, B < 2 without
      ``negatives``, margin <= 0.
  """
  anchor, positive = _as_matrix('anchor', anchor), _as_matrix('positive', positive)
  if not anchor.shape.is_compatible_with(positive.shape):
    raise ValueError(f'triplet_loss: anchor and positive must have the same shape [B, D], '
                     f'got {anchor.shape} and {positive.shape}.')
  if not margin > 0:
    raise ValueError(f'triplet_loss: margin must be positive, got {margin!r}.')
  if negatives is None:
    if anchor.shape[0] is not None and anchor.shape[0] < 2:
      raise ValueError('triplet_loss: the in-batch negatives need at least 2 pairs, got '
                       f'{anchor.shape[0]}; pass negatives=[M, D] candidates.')
    candidates = positive
  else:
    candidates = _as_matrix('negatives', negatives)
    if not anchor.shape[1:].is_compatible_with(candidates.shape[1:]):
      raise ValueError(f'triplet_loss: negatives must have the embedding size of anchor '
                       f'({anchor.shape[1]}), got shape {candidates.shape}.')
  distances = pairwise_distances(anchor, candidates, squared)  # [B, M]
  d_ap = tf.reduce_sum(tf.square(anchor - positive), axis=1)  # [B]
  if not squared:
    d_ap = _safe_sqrt(d_ap)
  if negatives is None:
    valid = tf.logical_not(tf.eye(tf.shape(anchor)[0], dtype=tf.bool))
  elif row_offset is not None:
    valid = tf.logical_not(_positive_mask(distances, row_offset))
  else:
    valid = tf.ones(tf.shape(distances), tf.bool)
  inf = tf.constant(math.inf, distances.dtype)
  semi = tf.logical_and(valid, tf.logical_and(distances > d_ap[:, None],
                                              distances < d_ap[:, None] + margin))
  has_semi = tf.reduce_any(semi, axis=1)
  closest_semi = tf.argmin(tf.where(semi, distances, inf), axis=1, output_type=tf.int32)
  hardest = tf.argmin(tf.where(valid, distances, inf), axis=1, output_type=tf.int32)
  chosen = tf.where(has_semi, closest_semi, hardest)
  d_an = tf.gather(distances, chosen, axis=1, batch_dims=1)
  return tf.nn.relu(d_ap - d_an + margin), chosen, has_semi


def triplet_loss(anchor, positive, negatives=None, margin=0.2, squared=True, row_offset=None):
  """Mean over the B anchors of the semi-hard triplet terms (``triplet_terms``); a scalar.

  FaceNet (Schroff et al., 2015) Eq. 1: sum over triplets of
  [||f(a) - f(p)||^2 - ||f(a) - f(n)||^2 + alpha]_+, here averaged, one triplet per anchor,
  negatives mined semi-hard within the batch (Sec. 3.2). Shapes: anchor, positive [B, D];
  negatives None or [M, D] (``row_offset``: see ``triplet_terms``).
  """
  return tf.reduce_mean(
      triplet_terms(anchor, positive, negatives, margin, squared, row_offset)[0])


# ------------------------------------------------------------------ InfoNCE over mined negatives

MINING = ('random', 'hard')


def _check_mining(scores, num_negatives, mining):
  if mining not in MINING:
    raise ValueError(f'mined InfoNCE: mining must be one of {MINING}, got {mining!r}.')
  if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 1:
    raise ValueError(f'mined InfoNCE: num_negatives must be an int >= 1, got '
                     f'{num_negatives!r}.')
  big_b = scores.shape[1]
  if big_b is not None and num_negatives >= big_b:
    raise ValueError(f'mined InfoNCE: num_negatives must be below the number of columns B = '
                     f'{big_b} (each row has B - 1 = {big_b - 1} negatives), got '
                     f'{num_negatives}.')


def mine_negatives(scores, row_offset, num_negatives, mining, seed=None):
  """Which negatives each row keeps: column indices [b, num_negatives] (int32), none a positive.

  - 'hard': the ``num_negatives`` highest-scoring negatives of the row (``tf.math.top_k``, in
    descending order of score; equal scores: the lower column first). The choice is a
    function of the scores' values only (no gradient flows through it).
  - 'random': ``num_negatives`` distinct negatives drawn uniformly at random without
    replacement per row: the top-k of i.i.d. uniform keys (every k-subset equally likely).
    ``seed``: None (stateful op-level randomness: a new draw at each call or step) or a
    [2] integer tensor for ``tf.random.stateless_uniform``; the keys are drawn for the
    GLOBAL rows [0, row_offset + b) and this replica's rows are sliced from them, so replicas
    with the same seed draw different (independent) subsets.

  Args:
    scores: float [b, B] (a replica's rows against the global batch), positive of row i at
      column i + row_offset.
    row_offset: column of row 0's positive (``mi_tf.distribute.replica_row_offset``).
    num_negatives: K - 1, an int in [1, B - 1].
    mining: 'random' or 'hard'.
  Raises:
    ValueError: unknown mining, num_negatives not an int in [1, B - 1] (B known statically).
  """
  scores = tf.convert_to_tensor(scores)
  _check_mining(scores, num_negatives, mining)
  is_positive = _positive_mask(scores, row_offset)
  if mining == 'hard':
    keys = tf.stop_gradient(scores)
  else:
    b = tf.shape(scores)[0]
    rows = tf.cast(row_offset, tf.int32) + b
    shape = tf.stack([rows, tf.shape(scores)[1]])
    if seed is None:
      keys = tf.random.uniform(shape, dtype=tf.float32)
    else:
      keys = tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32)
    keys = keys[rows - b:]
  keys = tf.where(is_positive, tf.constant(-math.inf, keys.dtype), keys)
  return tf.math.top_k(keys, k=num_negatives, sorted=True).indices


def mined_infonce_per_row(scores, row_offset, num_negatives, mining, seed=None):
  """Per-row InfoNCE terms over the positive and ``num_negatives`` mined negatives; [b].

  Row i keeps K - 1 = ``num_negatives`` of its B - 1 negatives (``mine_negatives``: random or
  the hardest) and its term is the InfoNCE term over those K columns,
  log K + S[i, i+o] - logsumexp([S[i, i+o], S[i, kept]]) <= log K. With num_negatives = B - 1
  it is ``mi_tf.estimators.infonce_per_row``. Hard negatives raise the logsumexp: on the same
  scores the hard value is <= any other choice's. The scores are differentiated; the choice
  of negatives is not.

  Args: as ``mine_negatives``. Returns: tensor [b] (mean over the B rows: the estimate).
  """
  scores = tf.convert_to_tensor(scores)
  kept = tf.gather(scores, mine_negatives(scores, row_offset, num_negatives, mining, seed),
                   axis=1, batch_dims=1)  # [b, K - 1]
  positive = _positive_scores(scores, row_offset)
  log_k = tf.math.log(tf.cast(num_negatives + 1, scores.dtype))
  columns = tf.concat([positive[:, None], kept], axis=1)
  return log_k + positive - tf.reduce_logsumexp(columns, axis=1)
