"""The adversarially trained invertible encoder of Sec. 3.1 (Fig. 1c, App. B).

An invertible encoder g1 (affine RealNVP) keeps I(g1(X1); X2) = I(X1; X2) whatever its
weights, yet it can be trained to make a linear classifier worse than on raw pixels:

  * a linear head h (10 logits on the 392-d code) is trained on the labels with the
    cross-entropy CE(y, h(g1(x))) (Adam, ``head_learning_rate``);
  * the encoder minimises the cross-entropy of h's prediction to the UNIFORM distribution,
    mean_i -1/10 sum_c log softmax(h(g1(x_i)))_c (Adam, ``encoder_learning_rate``), i.e. it
    hides the label from the current head; no g2, no critic, no MI term.

Schedule (App. B and the authors' Colab): ``warmup_steps`` (1,000) head-only steps before
the first encoder step, then ``head_steps_per_step`` (10) head steps before every encoder
step, each on its own batch of 128. A training step of the loop is one ENCODER step
(train.num_steps = 4,000); evaluation every 400 steps reports the test accuracy of a
separately trained linear probe on g1(X1) (the paper's protocol, ``mi_tf.probe``), which ends
below the pixel baseline in the paper, and the accuracy of the adversarial head itself.

Learning rates: the paper says Adam 1e-4 (head) and 1e-6 (encoder); the Colab uses 1e-3 and
1e-5. The defaults are the paper's; gin/sec3_1_adversarial_colab_lr.gin binds the Colab's.

Data stream (a pure function of the seed and the step, so resuming is exact): the training
stream of batches b_0, b_1, ... (``ImageHalves.train_dataset``); the warm-up reads b_0 ...
b_{W-1}, encoder step k reads b_{W + 11k} ... b_{W + 11k + 10} (10 head batches, then the
encoder's batch). The warm-up runs once, right after the checkpoint restore, when the loop
asks for the stream (``dataset_fn``); it is skipped when the restored head optimizer has
already taken it (its iteration count is W + 10 k after k encoder steps), so it is never
repeated on resume, and it is complete before the step-0 evaluation and the first checkpoint.
"""

import logging
import time

import gin
import tensorflow as tf

from mi_tf import data as data_lib
from mi_tf import distribute
from mi_tf import evaluation
from mi_tf import optimizers
from mi_tf.encoders import RealNVP
from mi_tf.tasks import base

import keras

_LOG = logging.getLogger(__name__)


def _replica_mean(per_example, global_batch_size):
  """This replica's share of the global batch mean (the shares sum to the mean)."""
  return tf.reduce_sum(per_example) / global_batch_size


def cross_entropy(labels, logits):
  """CE(y, softmax(logits)) per example: [b], [b, C] -> [b]."""
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def cross_entropy_to_uniform(logits):
  """CE(uniform, softmax(logits)) = -1/C sum_c log softmax(logits)_c per example: -> [b]."""
  return -tf.reduce_mean(tf.nn.log_softmax(logits), axis=-1)


@gin.configurable
class AdversarialInvertible(base.Task):
  """Adversarial training of an invertible encoder against a linear head (App. B).

  Args:
    encoder: class of g1 (gin: @RealNVP with RealNVP.coupling = 'affine').
    head_learning_rate: Adam learning rate of the linear head (paper 1e-4, Colab 1e-3).
    encoder_learning_rate: Adam learning rate of the encoder (paper 1e-6, Colab 1e-5).
    adam_epsilon: Adam's epsilon of both optimizers (default 1e-8, the authors' TF1
      AdamOptimizer; Keras: 1e-7).
    warmup_steps: head-only steps before the first encoder step (1,000).
    head_steps_per_step: head steps before each encoder step (10).
    num_classes: logits of the head (10).
    data: a ``mi_tf.data.ImageHalves`` (default: MNIST halves); only X1 and the labels are used.
  """

  name = 'adversarial_invertible'
  finite_metrics = ('probe/test_accuracy',)
  # The encoder's loss need not fall: the head is trained against it at a larger learning
  # rate (App. B), so only skipped steps and unchanged weights mark a degenerate run.
  train_objective = None

  def __init__(self, encoder=RealNVP, head_learning_rate=1e-4, encoder_learning_rate=1e-6,
               warmup_steps=1000, head_steps_per_step=10, num_classes=10, data=None,
               adam_epsilon=optimizers.AUTHORS_EPSILON):
    self.encoder_cls = encoder
    self.adam_epsilon = float(adam_epsilon)
    self.head_learning_rate = head_learning_rate
    self.encoder_learning_rate = encoder_learning_rate
    self.warmup_steps = int(warmup_steps)
    self.head_steps_per_step = int(head_steps_per_step)
    if self.warmup_steps < 0 or self.head_steps_per_step < 1:
      raise ValueError('AdversarialInvertible needs warmup_steps >= 0 and '
                       f'head_steps_per_step >= 1; got {warmup_steps}, {head_steps_per_step}.')
    self.num_classes = int(num_classes)
    self.data = data or data_lib.ImageHalves()

  def check_inputs(self):
    self.data.check()

  # Batches of the training stream read by one encoder step (head batches, then encoder's).
  @property
  def batches_per_step(self):
    return self.head_steps_per_step + 1

  def build(self, global_batch_size, seed):
    self.global_batch_size = global_batch_size
    self.seed = seed
    self.strategy = tf.distribute.get_strategy()
    self.input_shape = self.data.input_shape
    self.g1 = self.encoder_cls(name='g1')
    # The head in the variable dtype (float32 under mixed precision, as Keras's mixed-precision
    # guide advises for a model's output layer): its logits, both cross-entropies and the
    # evaluation's head metrics are float32. It is one 392 x 10 matmul per batch.
    self.head = keras.layers.Dense(self.num_classes, name='head',
                                   dtype=self.g1.dtype_policy.variable_dtype)
    self.head(self.g1(tf.zeros((2,) + tuple(self.input_shape))))
    self.head_optimizer = optimizers.FusedAdam(self.head_learning_rate,
                                               epsilon=self.adam_epsilon)
    self.head_optimizer.build(self.head.trainable_variables)
    self.encoder_optimizer = optimizers.FusedAdam(self.encoder_learning_rate,
                                                  epsilon=self.adam_epsilon)
    self.encoder_optimizer.build(self.g1.trainable_variables)
    self.warmup_updates = 0  # Head steps run by ``warm_up`` in this process (for tests).

  def trackables(self):
    return {'g1': self.g1, 'head': self.head, 'head_optimizer': self.head_optimizer,
            'encoder_optimizer': self.encoder_optimizer}

  # ---- data ----
  def _stream(self, ctx, first_batch):
    """Per-replica batches b_first, b_first+1, ... of the training stream."""
    return self.data.train_dataset(self.global_batch_size, self.seed, ctx, first_batch)

  def dataset_fn(self, global_batch_size, seed, start_step):
    """Batches for encoder steps start_step, ...: dicts of [11, b, ...] tensors.

    Called by the loop once, after the restore: completes the head warm-up first if the
    restored state has not taken it (module docstring).
    """
    del global_batch_size, seed  # Those given to build().
    self.warm_up()
    first = self.warmup_steps + self.batches_per_step * start_step
    return lambda ctx: self._stream(ctx, first).batch(self.batches_per_step,
                                                      drop_remainder=True)

  # ---- training ----
  def _head_update(self, x_code, labels):
    """One Adam step of the head on codes [b, D] (replica context); -> (loss, finite)."""
    with tf.GradientTape() as tape:
      replica_loss = _replica_mean(
          cross_entropy(labels, self.head(x_code, training=True)), self.global_batch_size)
    variables = self.head.trainable_variables
    grads = tape.gradient(replica_loss, variables)
    loss = distribute.all_reduce_sum(replica_loss)
    _, finite = base.apply_if_finite(self.head_optimizer, loss, grads, variables)
    return loss, finite

  def warm_up(self):
    """Runs the head-only warm-up steps not yet taken (none after a restore past it)."""
    remaining = self.warmup_steps - int(self.head_optimizer.iterations.numpy())
    if remaining <= 0:
      return
    done = self.warmup_steps - remaining
    dist = self.strategy.distribute_datasets_from_function(
        lambda ctx: self._stream(ctx, done).take(remaining))

    def replica_step(batch):
      code = tf.stop_gradient(self.g1(batch['x1'], training=False))
      return self._head_update(code, batch['label'])

    @tf.function
    def step(batch):
      loss, finite = self.strategy.run(replica_step, args=(batch,))
      return (self.strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None),
              self.strategy.reduce(tf.distribute.ReduceOp.MEAN, finite, axis=None))

    start = time.time()
    loss = float('nan')
    for batch in dist:
      loss, finite = step(batch)
      if float(finite) < 1:
        raise FloatingPointError(
            f'Non-finite head loss or gradient at warm-up step {self.warmup_updates}.')
      self.warmup_updates += 1
    _LOG.info('Head warm-up: %d steps in %.0f s (last loss %.4f).', remaining,
              time.time() - start, float(loss))

  def train_step(self, batch):
    """10 head steps then 1 encoder step; batch: dict of [11, b, ...] (replica context)."""
    x1, labels = batch['x1'], batch['label']
    n_head = self.head_steps_per_step
    b = tf.shape(x1)[1]
    # The encoder is fixed during the head steps: encode their 10 batches at once.
    head_x = tf.reshape(x1[:n_head], tf.concat([[n_head * b], tf.shape(x1)[2:]], 0))
    head_codes = tf.reshape(tf.stop_gradient(self.g1(head_x, training=False)),
                            [n_head, b, -1])
    finite = tf.constant(1.0)
    head_loss = tf.constant(0.0)
    for i in range(n_head):  # Unrolled: optimizer updates may not sit in tf control flow.
      loss_i, finite_i = self._head_update(head_codes[i], labels[i])
      head_loss += loss_i / n_head
      finite = tf.minimum(finite, finite_i)

    variables = self.g1.trainable_variables
    with tf.GradientTape() as tape:
      logits = self.head(self.g1(x1[n_head], training=True), training=False)
      replica_loss = _replica_mean(cross_entropy_to_uniform(logits), self.global_batch_size)
    grads = tape.gradient(replica_loss, variables)
    loss = distribute.all_reduce_sum(replica_loss)
    grad_norm, finite_e = base.apply_if_finite(self.encoder_optimizer, loss, grads, variables)
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), labels[n_head]),
                                    tf.float32))
    head_accuracy = distribute.all_reduce_sum(correct) / self.global_batch_size
    return {'loss': loss, 'head_loss': head_loss, 'head_accuracy': head_accuracy,
            'grad_norm': grad_norm, 'finite': tf.minimum(finite, finite_e)}

  # ---- evaluation ----
  def evaluate(self, step, final=False):
    f_tr, y_tr, f_te, y_te, results = evaluation.encode_eval_splits(self.data, self.g1)
    head, logits = evaluation.head_metrics(self.head, f_te, y_te)
    results.update(head)
    results['encoder/test_cross_entropy_to_uniform'] = float(
        tf.reduce_mean(cross_entropy_to_uniform(logits)))
    results['head/updates'] = float(self.head_optimizer.iterations.numpy())
    results['encoder/updates'] = float(self.encoder_optimizer.iterations.numpy())
    x1_te = self.data.eval_split('test')[0]
    results.update(evaluation.invertibility_metrics(
        self.g1, x1_te[:evaluation.INVERTIBILITY_EXAMPLES]))
    results.update(evaluation.probe_metrics(f_tr, y_tr, f_te, y_te,
                                            converged=step == 0 or final))
    return results

  def metadata(self):
    return dict(super().metadata(), head_learning_rate=self.head_learning_rate,
                encoder_learning_rate=self.encoder_learning_rate,
                warmup_steps=self.warmup_steps, head_steps_per_step=self.head_steps_per_step)
