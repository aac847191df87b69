"""Sec. 4 (Fig. 4c): InfoNCE and NWJ with non-i.i.d. negatives, on the 2-d Gaussian toy.

A critic f(x, y) on scalars (concat critic, 5 hidden layers of 10 ReLU units) is trained to
maximise I_EST on batches of 128 pairs, either i.i.d. or non-i.i.d. (one shared Z per batch,
see ``mi_tf.toy_data``). There is no encoder and no probe: the quantity of interest is the
value of the estimator itself, which the paper compares to the true MI (0.0204 nats). With
non-i.i.d. batches the estimates exceed the true MI (they are no longer lower bounds); with
i.i.d. batches they do not.

Run: ``python train.py --gin_file=gin/sec4_noniid.gin --model_dir=DIR`` (and sec4_iid*.gin).
"""

import time

import gin
import numpy as np
import tensorflow as tf

from mi_tf import critics as critics_lib
from mi_tf import distribute
from mi_tf import estimators
from mi_tf import evaluation
from mi_tf import optimizers
from mi_tf import toy_data
from mi_tf.tasks import base


def sec4_critic(name=None):
  """The critic of Sec. 4: concat critic with 5 hidden layers of 10 ReLU units."""
  return critics_lib.Concat(hidden_units=(10,) * 5, name=name)


@gin.configurable
class GaussianToy(base.Task):
  """max_f I_EST(x; y) on i.i.d. or non-i.i.d. batches of correlated scalars (Sec. 4).

  Args:
    sampling: 'noniid' (one Z per global batch, the paper's construction) or 'iid' (the
      control: pairs drawn independently from N(0, Sigma_Z + Sigma_e)).
    estimator: a registered estimator name ('infonce', 'nwj'; the training objective is
      -I_EST).
    critic: critic class or factory called with ``name=``; default: ``sec4_critic``.
    learning_rate: Adam learning rate (the Colab: 1e-4).
    adam_epsilon: Adam's epsilon (default 1e-8, the authors' TF1 AdamOptimizer; Keras: 1e-7).
    eval_batches: evaluation averages I_EST over this many fresh batches of the same sampler
      (10,000: an evaluation standard error of about 0.0002 nats for I_NCE of a trained
      critic, whose per-batch SD is about 0.017).
    eval_batch_size: pairs per evaluation batch (None: the training batch size, 128).
    eval_seed: the evaluation batches are the stateless draws (eval_seed, -1 - k), k <
      eval_batches: the same at every evaluation of a run, and disjoint from the training
      draws (seed, step >= 0). None (default): the run's seed, so that the runs of a setting
      are evaluated on INDEPENDENT batches and the spread over seeds contains the evaluation
      noise (with one shared set, the seeds' errors were correlated and their SD understated
      the uncertainty).
    sigma_z, sigma_e: covariances [2, 2] of Z and e_i (paper: [[1, -.5], [-.5, 1]] and
      [[1, .9], [.9, 1]]).
  """

  name = 'gaussian_toy'
  finite_metrics = ('I_EST/eval',)

  def __init__(self, sampling='noniid', estimator='infonce', critic=sec4_critic,
               learning_rate=1e-4, eval_batches=10000, eval_batch_size=None, eval_seed=None,
               sigma_z=toy_data.SIGMA_Z, sigma_e=toy_data.SIGMA_E,
               adam_epsilon=optimizers.AUTHORS_EPSILON):
    self.adam_epsilon = float(adam_epsilon)
    if sampling not in toy_data.SAMPLINGS:
      raise ValueError(f'Unknown sampling {sampling!r}; choose one of {toy_data.SAMPLINGS}.')
    self.sampling = sampling
    self.estimator = estimator
    self.bound = estimators.get(estimator)
    self.critic_cls = critic
    self.learning_rate = learning_rate
    self.eval_batches = int(eval_batches)
    self.eval_batch_size = eval_batch_size
    self.eval_seed = None if eval_seed is None else int(eval_seed)
    self.sigma_z = np.asarray(sigma_z, np.float64)
    self.sigma_e = np.asarray(sigma_e, np.float64)
    self.true_mi = toy_data.true_mi(self.sigma_z, self.sigma_e)

  def sample(self, batch_size, seed):
    """One batch (x, y), float32 [batch_size, 1] each, of this task's sampler."""
    return toy_data.sample(self.sampling, batch_size, seed, self.sigma_z, self.sigma_e)

  def build(self, global_batch_size, seed):
    # Initialisers are seeded by the training loop; the seed picks the evaluation batches.
    self.run_seed = int(seed)
    self.global_batch_size = global_batch_size
    self.critic = self.critic_cls(name='critic')
    self.critic(tf.zeros((2, 1)), tf.zeros((2, 1)))
    self.variables = self.critic.trainable_variables
    self.optimizer = optimizers.FusedAdam(self.learning_rate, epsilon=self.adam_epsilon)
    self.optimizer.build(self.variables)
    self._eval_fn = None

  def dataset_fn(self, global_batch_size, seed, start_step):
    """Per-replica batches {'x', 'y'}: [b, 1]; the global batch of step k is
    ``sample(B, (seed, k))``, so the stream is a pure function of (seed, step) and every
    replica (and input pipeline) slices the SAME global batch, hence shares its one Z."""

    def fn(input_context):
      replicas, pipelines, pipeline = 1, 1, 0
      if input_context is not None:
        replicas = input_context.num_replicas_in_sync
        pipelines = input_context.num_input_pipelines
        pipeline = input_context.input_pipeline_id
      if global_batch_size % replicas:
        raise ValueError(f'batch_size {global_batch_size} is not divisible by {replicas} '
                         'replicas.')
      per_replica = global_batch_size // replicas
      rows = global_batch_size // pipelines

      def global_batch(step):
        x, y = self.sample(global_batch_size, toy_data.batch_seed(seed, step))
        return {'x': x[pipeline * rows:(pipeline + 1) * rows],
                'y': y[pipeline * rows:(pipeline + 1) * rows]}

      # This pipeline's rows of every global batch, cut into consecutive per-replica batches
      # (replica g of the pipeline gets rows [g b, (g + 1) b), as in mi_tf.data).
      ds = tf.data.Dataset.range(start_step, 2**62).map(global_batch).unbatch()
      return ds.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

    return fn

  def trackables(self):
    return {'critic': self.critic, 'optimizer': self.optimizer}

  def train_step(self, batch):
    with tf.GradientTape() as tape:
      # Positives of this replica scored against the y of ALL replicas (global negatives).
      i_est = base.global_estimate(self.bound, self.critic, batch['x'], batch['y'],
                                   self.global_batch_size)
      loss = -i_est
      replica_loss = loss / distribute.num_replicas()
    grads = tape.gradient(replica_loss, self.variables)
    grad_norm, finite = base.apply_if_finite(self.optimizer, loss, grads, self.variables)
    return {'loss': loss, 'I_EST': i_est, 'grad_norm': grad_norm, 'finite': finite}

  def _build_eval_fn(self):
    batch_size = self.eval_batch_size or self.global_batch_size
    eval_seed = self.run_seed if self.eval_seed is None else self.eval_seed

    @tf.function
    def estimates():
      """Every registered estimator (float64) on each of the eval_batches fixed batches."""
      def batch_scores(k):
        seed = tf.stack([tf.constant(eval_seed, tf.int64), -1 - tf.cast(k, tf.int64)])
        x, y = self.sample(batch_size, seed)
        return self.critic(x, y, training=False)
      return evaluation.block_estimates(batch_scores, self.eval_batches)

    self._eval_fn = estimates

  def evaluate(self, step, final=False):
    """Every registered estimator (mean and SD over the fixed evaluation batches: I_NCE/eval,
    I_NCE/eval_sd, ...), I_EST (the trained one) and the true MI."""
    del step, final
    if self._eval_fn is None:
      self._build_eval_fn()
    start = time.time()
    with evaluation.timed('estimators'):
      per_batch = {estimators.get(name).metric: v.numpy()
                   for name, v in self._eval_fn().items()}
    results = {f'{metric}/eval': float(np.mean(v)) for metric, v in per_batch.items()}
    results.update({f'{metric}/eval_sd': float(np.std(v)) for metric, v in per_batch.items()})
    key = self.bound.metric
    results['I_EST/eval'] = results[f'{key}/eval']
    results['I_EST/eval_sd'] = results[f'{key}/eval_sd']
    results['true_mi'] = self.true_mi
    results['I_EST/eval_minus_true_mi'] = results['I_EST/eval'] - self.true_mi
    results['eval/estimate_seconds'] = time.time() - start
    return results

  def metadata(self):
    return dict(super().metadata(), sampling=self.sampling, estimator=self.estimator,
                true_mi=self.true_mi, critic=base.class_name(self.critic_cls))
