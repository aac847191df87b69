"""Representation learning by MI maximisation (Sec. 3): max_{g1, g2, f} I_EST(g1(X1); g2(X2)).

The task of every Sec. 3.1 (RealNVP, residual MLP), Sec. 3.2 (critics) and Sec. 3.3
(encoders at a fixed estimator value) setting, on MNIST halves or CIFAR-10 halves (App. G).
"""

import dataclasses
import functools
import math
import time

import gin
import tensorflow as tf

from mi_tf import conditioning
from mi_tf import critics as critics_lib
from mi_tf import data as data_lib
from mi_tf import distribute
from mi_tf import estimators
from mi_tf import evaluation
from mi_tf import optimizers
from mi_tf.encoders import MLP
from mi_tf.tasks import base


# The key of I_TUBA at the learned log-baseline among the evaluation's values (no registered
# estimator has this name: a registered one cannot hold the task's variable).
LEARNED_TUBA = 'tuba/learned_baseline'


@gin.configurable
class MIMaximization(base.Task):
  """max_{g1, g2, f} I_EST(g1(X1); g2(X2)) (Sec. 3), or min |I_EST - target| (Sec. 3.3).

  Args:
    encoder: encoder class (or factory) for g1; called once per encoder (separate weights).
    encoder_g2: class for g2; None means the same class as g1.
    shared_encoder: one encoder for both halves, g2 = g1 (the shared encoder of the
      metric-learning view, Sec. 4 and App. C: with the InnerProduct critic, maximising I_NCE
      is minimising the K-pair loss); default False, the paper's separate weights. Refused
      with encoder_g2.
    critic: critic class (Bilinear, Separable, Concat).
    estimator: a registered estimator name ('infonce', 'nwj', 'dv', 'js', 'tuba', 'smile',
      'alpha' or a parametrised 'smile_<tau>', ...; ``mi_tf.estimators.get``).
    target: None to maximise I_EST; a number t to minimise |I_EST - t| (Sec. 3.3, t in {2, 4}).
    learning_rate: Adam learning rate (paper: 1e-4 on MNIST, 1e-5 on CIFAR-10).
    adam_epsilon: Adam's epsilon (default 1e-8, the authors' TF1 AdamOptimizer; Keras: 1e-7).
    data: a ``mi_tf.data.ImageHalves`` (default: MNIST halves).
    eval_batch_size: batch size of the estimator's test value (paper: 128).
    train_estimate_examples: the train value of I_EST averages over this many training pairs
      taken in order (the test value uses the whole test split).
    condition_number_examples: if > 0, every evaluation also reports the log condition
      number of the Jacobian of g1 at the first this many probe-training inputs (with the
      data's noise, fixed draw): 'jacobian/log_cond_p0' ... '_p100', '_median' and the
      histogram 'jacobian/log_cond' (Sec. 3.1, Fig. 2c; paper: 128). 0 (default): off.
    learned_baseline: only with estimator 'tuba' (or 'tuba_<a>'): I_TUBA (Poole et al. 2019,
      Sec. 2.2), ``1 + E_p[f - a] - E_q[e^(f - a)]``, with the log-baseline a a trainable
      scalar (the variable ``log_baseline``, float32, initialised at the name's a: 0 for
      'tuba'), trained with the encoders and the critic. A scalar learned a is the same as a
      learned additive bias of the critic (TUBA(f, a) = I_NWJ(f - a + 1)), and the best
      constant a = log E_q[e^f] turns TUBA into I_DV; Poole et al.'s a(y) would need a
      network. I_EST (train and test) is then TUBA at the learned a, every evaluation logs
      ``tuba/log_baseline``, and the registry's I_TUBA (a fixed) is logged as ever. Default
      False.
    dv_moving_average: only with estimator 'dv': MINE's bias-corrected gradient (Belghazi et
      al. 2018, Sec. 3.2) with this decay beta in [0, 1) of the moving average of the
      partition term m = E_q[e^f] (MINE's rate 0.01 is beta = 0.99). The loss keeps I_DV's
      value and has the gradient of ``E_p[f] - m / stop_gradient(ema)``, i.e.
      ``E_p[grad f] - E_q[e^f grad f] / ema`` with ``ema <- beta ema + (1 - beta) m`` (the
      first step's ema is its m), m over the GLOBAL batch. The ema is kept in log space (no
      overflow of e^f) in the non-trainable variable ``dv_log_moving_average``, checkpointed,
      and logged at every evaluation after step 0 as ``dv/log_moving_average``. 0 (default):
      off, the plain DV gradient (beta = 0 would give the same gradient: ema = m).
  """

  name = 'mi_maximization'
  finite_metrics = ('I_EST/test', 'I_EST/train', 'probe/test_accuracy')

  def __init__(self, encoder=MLP, encoder_g2=None, critic=critics_lib.Bilinear,
               estimator='infonce', target=None, learning_rate=1e-4, data=None,
               eval_batch_size=128, train_estimate_examples=10000,
               condition_number_examples=0, adam_epsilon=optimizers.AUTHORS_EPSILON,
               shared_encoder=False, learned_baseline=False, dv_moving_average=0.0):
    if shared_encoder and encoder_g2 is not None:
      raise ValueError('MIMaximization: shared_encoder=True uses g1 for both halves; drop '
                       'encoder_g2 (or set shared_encoder=False).')
    self.shared_encoder = bool(shared_encoder)
    self.adam_epsilon = float(adam_epsilon)
    self.encoder_cls = encoder
    self.encoder_g2_cls = encoder_g2 or encoder
    self.critic_cls = critic
    self.estimator = estimator
    self.bound = estimators.get(estimator)
    self.learned_baseline = bool(learned_baseline)
    if self.learned_baseline and not _is_tuba(self.bound.name):
      raise ValueError(f'MIMaximization: learned_baseline=True is the log-baseline of I_TUBA; '
                       f'it needs estimator \'tuba\' (or \'tuba_<a>\'), got {estimator!r}.')
    self.dv_moving_average = float(dv_moving_average or 0.0)
    if not 0.0 <= self.dv_moving_average < 1.0 or (self.dv_moving_average
                                                    and self.bound.name != 'dv'):
      raise ValueError(f'MIMaximization: dv_moving_average is the decay in [0, 1) of MINE\'s '
                       f'moving average for estimator \'dv\' (0: off); got '
                       f'{dv_moving_average!r} with estimator {estimator!r}.')
    self.target = None if target is None else float(target)
    self.learning_rate = learning_rate
    self.data = data or data_lib.ImageHalves()
    self.eval_batch_size = eval_batch_size
    self.train_estimate_examples = train_estimate_examples
    self.condition_number_examples = int(condition_number_examples or 0)

  def check_inputs(self):
    self.data.check()

  def build(self, global_batch_size, seed):
    self.global_batch_size = global_batch_size
    self.input_shape = self.data.input_shape
    self.g1 = self.encoder_cls(name='g1')
    self.g2 = self.g1 if self.shared_encoder else self.encoder_g2_cls(name='g2')
    self.critic = self.critic_cls(name='critic')
    dummy = tf.zeros((2,) + tuple(self.input_shape))
    self.critic(self.g1(dummy), self.g2(dummy))
    self.variables = (self.g1.trainable_variables
                      + ([] if self.shared_encoder else self.g2.trainable_variables)
                      + self.critic.trainable_variables)
    self.log_baseline = None
    if self.learned_baseline:
      self.log_baseline = tf.Variable(_tuba_log_baseline(self.bound.name), dtype=tf.float32,
                                      trainable=True, name='log_baseline')
      self.variables = self.variables + [self.log_baseline]
    self.dv_log_ema = None
    if self.dv_moving_average:
      # Not trained; every replica computes the same global value, the first one's is kept.
      self.dv_log_ema = tf.Variable(
          -float('inf'), dtype=tf.float32, trainable=False, name='dv_log_moving_average',
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.optimizer = optimizers.FusedAdam(self.learning_rate, epsilon=self.adam_epsilon)
    self.optimizer.build(self.variables)
    self._eval_fns = None

  def dataset_fn(self, global_batch_size, seed, start_step):
    return lambda ctx: self.data.train_dataset(global_batch_size, seed, ctx, start_step)

  def trackables(self):
    out = {'g1': self.g1, 'g2': self.g2, 'critic': self.critic, 'optimizer': self.optimizer}
    if self.log_baseline is not None:  # Only when learned: earlier checkpoints stay as they are.
      out['log_baseline'] = self.log_baseline
    if self.dv_log_ema is not None:
      out['dv_log_moving_average'] = self.dv_log_ema
    return out

  def trained_bound(self):
    """The Estimator the loss maximises: the registry's, or with a learned baseline I_TUBA at
    the variable ``log_baseline`` (its per-row terms differentiate through it)."""
    if self.log_baseline is None:
      return self.bound
    return dataclasses.replace(self.bound, per_row=functools.partial(
        estimators.tuba_per_row, log_baseline=self.log_baseline))

  @property
  def train_objective(self):
    """'loss' (``base.Task``), or None where the loss is not what the step descends: an
    estimator trained with another objective (I_JS, I_SMILE: the value is the estimate's, the
    gradient the Jensen-Shannon objective's) and no target. Its -I_EST need not fall in a run
    that learns: I_JS, NWJ on the JS-trained critic, falls far below zero while the probe's
    accuracy rises. With a target, |I_EST - t| is what the run must bring down."""
    if self.bound.objective_per_row is not None and self.target is None:
      return None
    return 'loss'

  def objective(self, i_est):
    """The loss of Sec. 3: -I_EST, or |I_EST - t| with a target t (Sec. 3.3)."""
    if self.target is None:
      return -i_est
    return tf.abs(i_est - self.target)

  def loss(self, batch):
    """(loss of this replica, global I_EST) for one per-replica batch, in replica context.

    Each replica scores its positives against the negatives of ALL replicas, and I_EST is
    the mean of the per-row terms over the GLOBAL batch, so the estimator does not depend on
    the number of replicas. Every replica holds the global loss; its share is loss / R
    because gradients are summed over replicas. An estimator that is no mean of rows (I_DV,
    I_SMILE) combines per-row statistics gathered from all replicas instead
    (``Estimator.global_value``); one trained with another objective (I_JS, I_SMILE) has the
    estimate's value and the objective's gradient.
    """
    z1 = self.g1(batch['x1'], training=True)
    z2 = self.g2(batch['x2'], training=True)
    if self.dv_log_ema is not None:
      i_est = self._dv_with_moving_average(z1, z2)
    else:
      i_est = base.global_estimate(self.trained_bound(), self.critic, z1, z2,
                                   self.global_batch_size)
    return self.objective(i_est) / distribute.num_replicas(), i_est

  def _dv_with_moving_average(self, z1, z2):
    """I_DV of the global batch with MINE's moving-average gradient; updates the average.

    Value: ``E_p[f] - log m``, m = E_q[e^f] over the global batch's negatives (as
    ``estimators.dv``). Gradient: that of ``E_p[f] - m / stop_gradient(ema)``, computed as
    ``exp(log m - log ema)`` so that large scores do not overflow.
    """
    scores = self.critic(z1, distribute.cross_replica_concat(z2))
    offset = distribute.replica_row_offset(tf.shape(z1)[0])
    stats = {k: distribute.cross_replica_concat(v)
             for k, v in estimators.dv_statistics(scores, offset).items()}
    log_m = (tf.reduce_logsumexp(stats['log_sum_exp_negatives'])
             - tf.math.log(tf.reduce_sum(stats['num_negatives'])))
    positive = tf.reduce_mean(stats['positive'])
    beta = self.dv_moving_average
    old = self.dv_log_ema.read_value()
    log_m_now = tf.stop_gradient(log_m)
    averaged = tf.reduce_logsumexp(tf.stack([math.log(beta) + old,
                                             math.log1p(-beta) + log_m_now]))
    log_ema = tf.where(tf.math.is_finite(old), averaged, log_m_now)
    self.dv_log_ema.assign(log_ema)
    estimate = positive - log_m
    surrogate = positive - tf.exp(log_m - log_ema)
    return tf.stop_gradient(estimate) + (surrogate - tf.stop_gradient(surrogate))

  def train_step(self, batch):
    with tf.GradientTape() as tape:
      replica_loss, i_est = self.loss(batch)
    grads = tape.gradient(replica_loss, self.variables)
    loss = replica_loss * distribute.num_replicas()
    grad_norm, finite = base.apply_if_finite(self.optimizer, loss, grads, self.variables)
    return {'loss': loss, 'I_EST': i_est, 'grad_norm': grad_norm, 'finite': finite}

  def _build_eval_fns(self):
    d = self.eval_batch_size

    @tf.function
    def estimates(z1, z2):
      """z1, z2: [n d, D] in order -> {name: mean over the n blocks of d pairs} (float32)."""
      def block_scores(k):
        return self.critic(z1[k * d:(k + 1) * d], z2[k * d:(k + 1) * d], training=False)
      num_blocks = tf.shape(z1)[0] // d
      per_block = evaluation.block_estimates(block_scores, num_blocks)
      out = {name: tf.reduce_mean(tf.cast(v, tf.float32)) for name, v in per_block.items()}
      if self.log_baseline is not None:
        out[LEARNED_TUBA] = tf.cast(learned_tuba(block_scores, num_blocks), tf.float32)
      return out

    def learned_tuba(block_scores, num_blocks):
      """I_TUBA at the learned log-baseline, mean over the blocks (float64, as the others)."""
      a = tf.cast(self.log_baseline, tf.float64)
      total = tf.constant(0.0, tf.float64)
      for k in tf.range(num_blocks):
        s = tf.cast(block_scores(k), tf.float64)
        total += tf.reduce_mean(estimators.tuba_per_row(s, 0, log_baseline=a))
      return total / tf.cast(num_blocks, tf.float64)

    self._eval_fns = estimates

  def evaluate(self, step, final=False):
    """Probe accuracy (also the converged probe's at step 0 and at the end), every registered
    estimator on the test split and on the first ``train_estimate_examples`` training pairs
    (``I_NCE/test``, ``I_NWJ/train``, ...; I_EST is the trained one), the invertibility of an
    invertible g1 (Sec. 3.1) and optionally the Jacobian condition numbers of g1."""
    if self._eval_fns is None:
      self._build_eval_fns()
    x2_tr = self.data.eval_split('train')[1]
    x2_te = self.data.eval_split('test')[1]
    f_tr, y_tr, f_te, y_te, timing = evaluation.encode_eval_splits(self.data, self.g1)
    start = time.time()
    results = {}
    n_est = min(len(x2_tr), self.train_estimate_examples)
    for split, z1, x2 in (('test', f_te, x2_te), ('train', f_tr[:n_est], x2_tr[:n_est])):
      z2 = evaluation.encode(self.g2, x2)
      with evaluation.timed('estimators'):
        values = {k: float(v) for k, v in self._eval_fns(tf.constant(z1),
                                                          tf.constant(z2)).items()}
      learned = values.pop(LEARNED_TUBA, None)
      for name, value in values.items():
        results[f'{estimators.get(name).metric}/{split}'] = float(value)
      results[f'I_EST/{split}'] = (results[f'{self.bound.metric}/{split}'] if learned is None
                                   else learned)
    if self.log_baseline is not None:
      results['tuba/log_baseline'] = float(self.log_baseline.numpy())
    if self.dv_log_ema is not None and math.isfinite(float(self.dv_log_ema.numpy())):
      results['dv/log_moving_average'] = float(self.dv_log_ema.numpy())  # From step 1 on.
    results['eval/encode_seconds'] = timing['eval/encode_seconds'] + time.time() - start
    results.update(evaluation.probe_metrics(f_tr, y_tr, f_te, y_te,
                                            converged=step == 0 or final))
    x1_te = self.data.eval_split('test')[0]
    results.update(evaluation.invertibility_metrics(
        self.g1, x1_te[:evaluation.INVERTIBILITY_EXAMPLES]))
    if self.condition_number_examples:
      x1_tr = self.data.eval_split('train')[0]
      start = time.time()
      with evaluation.timed('jacobian'):
        results.update(conditioning.log_condition_summary(
            self.g1, tf.constant(x1_tr[:self.condition_number_examples])))
      results['jacobian/seconds'] = time.time() - start
    return results

  def metadata(self):
    out = dict(super().metadata(), estimator=self.estimator, target=self.target,
               noise_std=self.data.noise_std, critic=base.class_name(self.critic_cls))
    if self.shared_encoder:  # Recorded only when set: the records of earlier runs stay equal.
      out['shared_encoder'] = True
    if self.learned_baseline:  # Likewise.
      out['learned_baseline'] = True
    if self.dv_moving_average:
      out['dv_moving_average'] = self.dv_moving_average
    return out


def _is_tuba(name):
  """Whether a registered estimator name is I_TUBA ('tuba' or a 'tuba_<a>')."""
  return name == 'tuba' or name.startswith('tuba_')


def _tuba_log_baseline(name):
  """The log-baseline a of a registered TUBA name: 0 for 'tuba', a for 'tuba_<a>'."""
  return 0.0 if name == 'tuba' else float(name.partition('_')[2])
