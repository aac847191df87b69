"""What a run trains and evaluates: the training loop in ``train_lib`` drives a ``Task``.

A task owns its models and optimizers (built inside the strategy's scope), its input stream,
one training step (in replica context), its evaluation and the model it exports. New kinds of
experiment (the adversarial encoder of Sec. 3.1, the Gaussian toy of Sec. 4) are new tasks; new
encoders or critics are new classes named in a gin file. Neither edits the training loop.
"""

import time
import weakref

import gin
import numpy as np
import tensorflow as tf

from mi_tf import conditioning
from mi_tf import critics as critics_lib
from mi_tf import data as data_lib
from mi_tf import distribute
from mi_tf import estimators
from mi_tf import optimizers
from mi_tf import probe as probe_lib
from mi_tf.encoders import MLP


@gin.configurable
class ImageHalves:
  """A TFDS image dataset seen as pairs of halves (X1 = top, X2 = bottom), Sec. 3.

  Args:
    dataset: TFDS name ('mnist'; 'cifar10' for App. G).
    data_dir: TFDS data directory (None: TFDS's default, which honours TFDS_DATA_DIR).
    noise_std: std of the coupled noise added to both halves (Sec. 3.1 residual MLP: 0.05).
    train_split, probe_train_split, test_split: TFDS split strings (slices allowed, e.g.
      'train[:2000]' in tests). The probe fits on probe_train_split and scores on test_split.
    download: see ``mi_tf.data.check_available``.
  """

  def __init__(self, dataset='mnist', data_dir=None, noise_std=0.0, train_split='train',
               probe_train_split='train', test_split='test', download=None):
    self.dataset = dataset
    self.data_dir = data_dir
    self.noise_std = float(noise_std)
    self.train_split = train_split
    self.probe_train_split = probe_train_split
    self.test_split = test_split
    self.download = download

  def check(self):
    """Fails fast (seconds) with a clear message if any split cannot be loaded."""
    for split in (self.train_split, self.probe_train_split, self.test_split):
      builder = data_lib.check_available(self.dataset, split, self.data_dir, self.download)
    return builder

  @property
  def input_shape(self):
    """Shape of one half, e.g. (14, 28, 1) for MNIST."""
    builder = data_lib.check_available(self.dataset, self.train_split, self.data_dir,
                                       self.download)
    return data_lib.half_shape(builder.info.features['image'].shape)

  def train_dataset(self, batch_size, seed, input_context=None, start_step=0):
    return data_lib.train_dataset(self.dataset, self.train_split, self.data_dir, batch_size,
                                  seed, self.noise_std, input_context=input_context,
                                  start_step=start_step, download=self.download)

  def eval_split(self, which, noise_seed=0):
    """'train' or 'test' -> (x1, x2, labels), whole split in order."""
    split = self.probe_train_split if which == 'train' else self.test_split
    return data_lib.eval_halves(self.dataset, split, self.data_dir, self.noise_std,
                                noise_seed, self.download)


class Task:
  """Interface between an experiment and the training loop (see train_lib.train)."""

  name = 'task'
  # Evaluation metrics that must be finite (training stops otherwise); others are only logged.
  finite_metrics = ()

  def check_inputs(self):
    """Validates data and settings before anything is built or written."""

  def build(self, global_batch_size, seed):
    """Creates models and optimizers; called once inside ``strategy.scope()``."""
    raise NotImplementedError

  def dataset_fn(self, global_batch_size, seed, start_step):
    """Returns fn(input_context) -> tf.data.Dataset of per-replica batches from start_step
    on; the stream must be a pure function of (seed, step) so that resuming is exact."""
    raise NotImplementedError

  def trackables(self):
    """Dict of name -> trackable saved in every checkpoint."""
    raise NotImplementedError

  def train_step(self, batch):
    """One update in replica context; returns dict of scalar tensors incl. 'loss' and
    'finite' (1.0 if loss and gradients were finite and the update was applied)."""
    raise NotImplementedError

  def evaluate(self, step):
    """Returns dict name -> float (scalars) or numpy array (logged as a histogram)."""
    raise NotImplementedError

  def export_model(self):
    """(keras model, input shape) of the representation to export, or None."""
    return None

  def metadata(self):
    return {'task': self.name}


def apply_if_finite(optimizer, loss, grads, variables):
  """Sums gradients over replicas and applies them, zeroed if the step is not finite.

  Returns (global gradient norm, finite flag as float32). A step whose loss or gradient norm
  is NaN/inf applies a ZERO gradient instead, so NaN or inf never reaches the weights (Adam's
  moments still decay, as for any zero gradient; the training loop stops at such a step under
  nonfinite_policy='stop', before anything is saved, or counts it under 'skip'). A real
  conditional update is not possible here: Keras 3 optimizers synchronise replicas inside
  apply_gradients, which TF forbids inside tf.cond.

  Keras 3 optimizers all-reduce (sum) gradients themselves in replica context; we need the
  global gradient first (for its norm and the finiteness test, identical on all replicas), so
  we pass it divided by the replica count and the optimizer's sum restores it.
  """
  grads = distribute.all_reduce_sum(grads)
  grad_norm = tf.linalg.global_norm(grads)
  finite = tf.logical_and(tf.math.is_finite(loss), tf.math.is_finite(grad_norm))
  scale = 1.0 / distribute.num_replicas()
  optimizer.apply_gradients(
      [(tf.where(finite, g * scale, tf.zeros_like(g)), v) for g, v in zip(grads, variables)])
  return grad_norm, tf.cast(finite, tf.float32)


# Not an attribute of the model: Keras would track it and SavedModel export would trace it.
_ENCODE_FNS = weakref.WeakKeyDictionary()


def encode(model, x, batch_size=1000):
  """Frozen features ``model(x)`` of a numpy array [N, ...], in batches -> numpy [N, D].

  The tf.function is built once per model (one trace per batch shape).
  """
  fn = _ENCODE_FNS.get(model)
  if fn is None:
    fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
    _ENCODE_FNS[model] = fn
  out = [fn(tf.convert_to_tensor(x[i:i + batch_size])).numpy()
         for i in range(0, len(x), batch_size)]
  return np.concatenate(out)


def encode_eval_splits(data, model):
  """Frozen features model(X1) of the train and test evaluation splits of ``data``.

  Args:
    data: an ImageHalves.
    model: the encoder g1, [N, ...] -> [N, D].
  Returns:
    (f_tr [N_tr, D], y_tr [N_tr], f_te [N_te, D], y_te [N_te], {'eval/encode_seconds': s}).
  """
  x1_tr, _, y_tr = data.eval_split('train')
  x1_te, _, y_te = data.eval_split('test')
  start = time.time()
  f_tr, f_te = encode(model, x1_tr), encode(model, x1_te)
  return f_tr, y_tr, f_te, y_te, {'eval/encode_seconds': time.time() - start}


def probe_metrics(f_tr, y_tr, f_te, y_te):
  """The paper's linear probe (mi_tf.probe) on frozen features, as evaluation metrics.

  Args:
    f_tr, f_te: features g1(X1) of the train and test splits, [N, D].
    y_tr, y_te: their labels, [N].
  Returns:
    dict: probe/test_accuracy, probe/train_accuracy, probe/seconds.
  """
  probe = probe_lib.linear_probe(f_tr, y_tr, f_te, y_te)
  return {'probe/test_accuracy': probe['test_accuracy'],
          'probe/train_accuracy': probe['train_accuracy'],
          'probe/seconds': probe['seconds']}


def head_metrics(head, f_te, y_te):
  """Accuracy and cross-entropy of a trained linear head on test features.

  Args:
    head: a layer mapping features [N, D] to logits [N, C].
    f_te: test features [N, D]; y_te: labels [N].
  Returns:
    (dict with head/test_accuracy and head/test_cross_entropy, logits [N, C]).
  """
  logits = head(tf.constant(f_te), training=False)
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_te, logits=logits)
  return {'head/test_accuracy': float(np.mean(np.argmax(logits, -1) == y_te)),
          'head/test_cross_entropy': float(tf.reduce_mean(ce))}, logits


@gin.configurable
class MIMaximization(Task):
  """max_{g1, g2, f} I_EST(g1(X1); g2(X2)) (Sec. 3), or min |I_EST - target| (Sec. 3.3).

  Args:
    encoder: encoder class (or factory) for g1; called once per encoder (separate weights).
    encoder_g2: class for g2; None means the same class as g1.
    critic: critic class (Bilinear, Separable, Concat).
    estimator: 'infonce' or 'nwj'.
    target: None to maximise I_EST; a number t to minimise |I_EST - t| (Sec. 3.3, t in {2, 4}).
    learning_rate: Adam learning rate (paper: 1e-4 on MNIST, 1e-5 on CIFAR-10).
    data: an ImageHalves (default: MNIST halves).
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
               condition_number_examples=0):
    self.encoder_cls = encoder
    self.encoder_g2_cls = encoder_g2 or encoder
    self.critic_cls = critic
    self.estimator = estimator
    self.per_row = estimators.get_per_row(estimator)
    self.target = None if target is None else float(target)
    self.learning_rate = learning_rate
    self.data = data or ImageHalves()
    self.eval_batch_size = eval_batch_size
    self.train_estimate_examples = train_estimate_examples
    self.condition_number_examples = int(condition_number_examples or 0)

  def check_inputs(self):
    self.data.check()

  def build(self, global_batch_size, seed):
    self.global_batch_size = global_batch_size
    self.input_shape = self.data.input_shape
    self.g1 = self.encoder_cls(name='g1')
    self.g2 = self.encoder_g2_cls(name='g2')
    self.critic = self.critic_cls(name='critic')
    dummy = tf.zeros((2,) + tuple(self.input_shape))
    self.critic(self.g1(dummy), self.g2(dummy))
    self.variables = (self.g1.trainable_variables + self.g2.trainable_variables
                      + self.critic.trainable_variables)
    self.optimizer = optimizers.FusedAdam(self.learning_rate)
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
    because gradients are summed over replicas.
    """
    x1, x2 = batch['x1'], batch['x2']
    z1 = self.g1(x1, training=True)
    z2 = self.g2(x2, training=True)
    scores = self.critic(z1, distribute.cross_replica_concat(z2))
    rows = self.per_row(scores, distribute.replica_row_offset(tf.shape(x1)[0]))
    i_est = distribute.all_reduce_sum(tf.reduce_sum(rows)) / self.global_batch_size
    return self.objective(i_est) / distribute.num_replicas(), i_est

  def train_step(self, batch):
    with tf.GradientTape() as tape:
      replica_loss, i_est = self.loss(batch)
    grads = tape.gradient(replica_loss, self.variables)
    loss = replica_loss * distribute.num_replicas()
    grad_norm, finite = apply_if_finite(self.optimizer, loss, grads, self.variables)
    return {'loss': loss, 'I_EST': i_est, 'grad_norm': grad_norm, 'finite': finite}

  def _build_eval_fns(self):
    d = self.eval_batch_size

    @tf.function
    def estimates(z1, z2):
      # z1, z2: [n * d, D] in order -> mean over blocks of d of I_NCE and I_NWJ. Scores are
      # cast to float64: the NWJ value of a critic trained with InfoNCE overflows float32.
      n = tf.shape(z1)[0] // d
      nce = tf.TensorArray(tf.float32, size=n)
      nwj = tf.TensorArray(tf.float32, size=n)
      for k in tf.range(n):
        s = tf.cast(self.critic(z1[k * d:(k + 1) * d], z2[k * d:(k + 1) * d],
                                training=False), tf.float64)
        nce = nce.write(k, tf.cast(estimators.infonce(s), tf.float32))
        nwj = nwj.write(k, tf.cast(estimators.nwj(s), tf.float32))
      return tf.reduce_mean(nce.stack()), tf.reduce_mean(nwj.stack())

    self._eval_fns = estimates

  def evaluate(self, step):
    if self._eval_fns is None:
      self._build_eval_fns()
    x1_tr, x2_tr, y_tr = self.data.eval_split('train')
    x1_te, x2_te, y_te = self.data.eval_split('test')
    start = time.time()
    f_tr, f_te = encode(self.g1, x1_tr), encode(self.g1, x1_te)
    results = {}
    n_est = min(len(x2_tr), self.train_estimate_examples)
    for split, z1, x2 in (('test', f_te, x2_te), ('train', f_tr[:n_est], x2_tr[:n_est])):
      z2 = encode(self.g2, x2)
      nce, nwj = self._eval_fns(tf.constant(z1), tf.constant(z2))
      results[f'I_NCE/{split}'] = float(nce)
      results[f'I_NWJ/{split}'] = float(nwj)
      results[f'I_EST/{split}'] = results[
          f'I_NCE/{split}' if self.estimator == 'infonce' else f'I_NWJ/{split}']
    results['eval/encode_seconds'] = time.time() - start
    results.update(probe_metrics(f_tr, y_tr, f_te, y_te))
    if self.condition_number_examples:
      start = time.time()
      results.update(conditioning.log_condition_summary(
          self.g1, tf.constant(x1_tr[:self.condition_number_examples])))
      results['jacobian/seconds'] = time.time() - start
    return results

  def export_model(self):
    return self.g1, self.input_shape

  def metadata(self):
    return {'task': self.name, 'estimator': self.estimator, 'target': self.target,
            'dataset': self.data.dataset, 'noise_std': self.data.noise_std,
            'encoder': getattr(self.encoder_cls, '__name__', str(self.encoder_cls)),
            'critic': getattr(self.critic_cls, '__name__', str(self.critic_cls))}
