"""Representation learning by MI maximisation (Sec. 3): max_{g1, g2, f} I_EST(g1(X1); g2(X2)).

The task of every Sec. 3.1 (RealNVP, residual MLP), Sec. 3.2 (critics) and Sec. 3.3
(encoders at a fixed estimator value) setting, on MNIST halves or CIFAR-10 halves (App. G).
"""

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
  """

  name = 'mi_maximization'
  finite_metrics = ('I_EST/test', 'I_EST/train', 'probe/test_accuracy')

  def __init__(self, encoder=MLP, encoder_g2=None, critic=critics_lib.Bilinear,
               estimator='infonce', target=None, learning_rate=1e-4, data=None,
               eval_batch_size=128, train_estimate_examples=10000,
               condition_number_examples=0, adam_epsilon=optimizers.AUTHORS_EPSILON,
               shared_encoder=False):
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
    self.optimizer = optimizers.FusedAdam(self.learning_rate, epsilon=self.adam_epsilon)
    self.optimizer.build(self.variables)
    self._eval_fns = None

  def dataset_fn(self, global_batch_size, seed, start_step):
    return lambda ctx: self.data.train_dataset(global_batch_size, seed, ctx, start_step)

  def trackables(self):
    return {'g1': self.g1, 'g2': self.g2, 'critic': self.critic, 'optimizer': self.optimizer}

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
    i_est = base.global_estimate(self.bound, self.critic, z1, z2, self.global_batch_size)
    return self.objective(i_est) / distribute.num_replicas(), i_est

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
      per_block = evaluation.block_estimates(block_scores, tf.shape(z1)[0] // d)
      return {name: tf.reduce_mean(tf.cast(v, tf.float32)) for name, v in per_block.items()}

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
      for name, value in values.items():
        results[f'{estimators.get(name).metric}/{split}'] = float(value)
      results[f'I_EST/{split}'] = results[f'{self.bound.metric}/{split}']
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
    return out
