"""Representation learning by metric-learning objectives (beyond the paper: Sec. 4 and App. C).

The paper argues that InfoNCE works as a metric-learning loss rather than as an MI estimate.
``MetricLearning`` trains the Sec. 3 setup (two halves of an image, encoders g1, g2, a critic)
with the losses of that view instead of max I_EST, and evaluates it exactly as
``MIMaximization`` does (linear probe, every registered estimator on the critic, the k-NN and
converged probes at step 0 and at the end):

- 'kpair': the multi-class K-pair loss (Sohn 2016, Eq. 7) of the critic's scores over the
  global batch; with the InnerProduct critic and a shared encoder it is log K - I_NCE (App. C).
- 'triplet': FaceNet's triplet loss (Schroff et al. 2015, Eq. 1) with semi-hard negatives
  mined among the global batch's other positives, on L2-normalised embeddings.
- 'infonce_mined': I_NCE over K = num_negatives + 1 columns per row, the positive and
  num_negatives of the row's B - 1 negatives, drawn at random or the hardest (top-scoring).
"""

import gin
import tensorflow as tf

from mi_tf import distribute
from mi_tf import estimators
from mi_tf import metric_learning
from mi_tf.tasks import mi_maximization

OBJECTIVES = ('kpair', 'triplet', 'infonce_mined')
MINING = metric_learning.MINING  # ('random', 'hard')
# Arguments of MIMaximization that this task fixes: it trains its own objective and reports
# I_NCE as I_EST.
_FIXED = ('estimator', 'target')


@gin.configurable
class MetricLearning(mi_maximization.MIMaximization):
  """min_{g1, g2, f} L(g1(X1), g2(X2)) for a metric-learning loss L (Sec. 4, App. C).

  Every argument of ``MIMaximization`` but ``estimator`` and ``target`` is accepted (by
  keyword; gin binds them as ``MetricLearning.<arg>``, and ``MIMaximization.<arg>`` bindings
  apply to those not bound here: the shared gin protocols keep working). The metric-learning
  settings use ``shared_encoder=True`` (App. C's one encoder) and the ``InnerProduct``
  critic, or separate encoders to ask what sharing changes.

  I_EST, the value logged for training and reported at evaluation (``I_EST/test``,
  ``I_EST/train``), is I_NCE for every objective, so the runs sit on the axes of the MI runs:
  - 'kpair': log K - K-pair loss of the same global-batch scores (= I_NCE of them, App. C);
  - 'triplet': I_NCE of the critic's scores of the global batch. The triplet loss does not
    read the critic: with InnerProduct (the metric_triplet settings) on the RAW features,
    whose norms the normalised loss leaves free, this I_NCE is an unnormalised-score
    yardstick, comparable between triplet runs only; the ``Cosine`` critic (scores of the
    normalised features over a temperature) gives one on the sphere the loss trains. A
    critic with weights is refused (nothing would train them);
  - 'infonce_mined': in training, the mined I_NCE over K = num_negatives + 1 columns (the
    trained objective, <= log K); at evaluation, I_NCE of the critic over blocks of
    ``eval_batch_size`` pairs with every negative of the block (as for every MI run).

  Args:
    objective: 'kpair', 'triplet' or 'infonce_mined'.
    margin: the triplet margin alpha (FaceNet: 0.2, on unit-norm embeddings with squared
      distances); only with 'triplet'.
    num_negatives: K - 1, the negatives each row keeps, an int in [1, B - 1]; needed by (and
      only with) 'infonce_mined'.
    mining: 'random' (uniform, distinct, a new draw every step from (train.seed, step):
      resumed runs draw the same) or 'hard' (the num_negatives highest-scoring negatives of
      the row; the choice is not differentiated, the kept scores are); only with
      'infonce_mined'.
    **kwargs: the arguments of ``MIMaximization`` (encoder, shared_encoder, critic, data,
      learning_rate, eval_batch_size, ...).
  """

  name = 'metric_learning'

  def __init__(self, objective='kpair', margin=0.2, num_negatives=None, mining='random',
               **kwargs):
    if objective not in OBJECTIVES:
      raise ValueError(f'MetricLearning: objective must be one of {OBJECTIVES}, got '
                       f'{objective!r}.')
    fixed = sorted(k for k in _FIXED if k in kwargs)
    if fixed:
      raise ValueError(f'MetricLearning: {", ".join(fixed)} cannot be set: the task trains '
                       f'its objective ({objective!r}) and reports I_NCE as I_EST; use '
                       'MIMaximization to train an estimator.')
    if objective == 'triplet':
      if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin > 0:
        raise ValueError(f'MetricLearning: the triplet margin must be a positive number, got '
                         f'{margin!r}.')
    if objective == 'infonce_mined':
      if (isinstance(num_negatives, bool) or not isinstance(num_negatives, int)
          or num_negatives < 1):
        raise ValueError(f"MetricLearning: objective 'infonce_mined' needs num_negatives, an "
                         f'int >= 1 (K - 1 negatives kept per row), got {num_negatives!r}.')
      if mining not in MINING:
        raise ValueError(f'MetricLearning: mining must be one of {MINING}, got {mining!r}.')
    elif num_negatives is not None:
      raise ValueError(f"MetricLearning: num_negatives is for objective 'infonce_mined', not "
                       f'{objective!r}; drop it.')
    super().__init__(estimator='infonce', target=None, **kwargs)
    self.objective_name = objective
    self.margin = float(margin)
    self.num_negatives = num_negatives
    self.mining = mining

  def build(self, global_batch_size, seed):
    if (self.objective_name == 'infonce_mined'
        and not self.num_negatives < global_batch_size):
      raise ValueError(f'MetricLearning: num_negatives must be below the batch size '
                       f'B = {global_batch_size} (each row has B - 1 negatives), got '
                       f'{self.num_negatives}.')
    super().build(global_batch_size, seed)
    self.seed = int(seed)
    if self.objective_name == 'triplet' and self.critic.trainable_variables:
      raise ValueError(f'MetricLearning: the triplet loss does not train the critic, but '
                       f'{type(self.critic).__name__} has weights; use @InnerProduct or '
                       '@Cosine.')

  def mining_seed(self):
    """[2] int64 seed of this step's random negatives: (train.seed, optimizer step)."""
    return tf.stack([tf.constant(self.seed, tf.int64),
                     tf.cast(self.optimizer.iterations, tf.int64)])

  def _global_mean(self, rows):
    """Mean over the GLOBAL batch of per-row terms [b] of this replica (as base.global_estimate)."""
    return distribute.all_reduce_sum(tf.reduce_sum(rows)) / self.global_batch_size

  def loss(self, batch):
    """(loss of this replica, global I_NCE) for one per-replica batch, in replica context.

    Every term is over the GLOBAL batch: each replica scores (or compares) its b rows against
    the representations of ALL replicas, row i's positive at column i + row offset
    (``distribute.replica_row_offset``); the loss is the mean over the B rows, every replica
    holds it and its share is loss / R (gradients are summed over replicas).
    """
    z1 = self.g1(batch['x1'], training=True)
    z2 = self.g2(batch['x2'], training=True)
    z2_all = distribute.cross_replica_concat(z2)
    offset = distribute.replica_row_offset(tf.shape(z1)[0])
    scores = self.critic(z1, z2_all)
    log_k = tf.math.log(tf.cast(self.global_batch_size, scores.dtype))
    if self.objective_name == 'kpair':
      loss = self._global_mean(metric_learning.kpair_loss_per_row(scores, offset))
      i_est = log_k - loss
    elif self.objective_name == 'triplet':
      anchor = tf.math.l2_normalize(tf.cast(z1, tf.float32), axis=1)
      positive = tf.math.l2_normalize(tf.cast(z2, tf.float32), axis=1)
      candidates = distribute.cross_replica_concat(positive)
      terms = metric_learning.triplet_terms(anchor, positive, candidates, self.margin,
                                            row_offset=offset)[0]
      loss = self._global_mean(terms)
      i_est = self._global_mean(estimators.infonce_per_row(scores, offset))
    else:
      seed = self.mining_seed() if self.mining == 'random' else None
      i_est = self._global_mean(metric_learning.mined_infonce_per_row(
          scores, offset, self.num_negatives, self.mining, seed))
      loss = -i_est
    return loss / distribute.num_replicas(), i_est

  def metadata(self):
    out = dict(super().metadata(), objective=self.objective_name)
    if self.objective_name == 'triplet':
      out['margin'] = self.margin
    if self.objective_name == 'infonce_mined':
      out.update(num_negatives=self.num_negatives, mining=self.mining)
    return out
