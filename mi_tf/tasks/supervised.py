"""Supervised baselines on X1 (the paper's reference: about 94% test accuracy on MNIST).

An encoder g1 (the MLP of Sec. 3.2 or the ConvNet of Sec. 3.3) and a linear head are trained
end to end on the labels of the top half X1 with the cross-entropy (Adam 1e-4, batch 128,
20,000 steps, as the MI runs). Evaluation follows the MI runs' protocol: the paper's linear
probe fitted on the frozen features g1(X1) (``probe/test_accuracy``, the number compared with
the MI-trained encoders), and the test accuracy of the trained head itself
(``head/test_accuracy``, the classifier's own accuracy).

Run: ``python train.py --gin_file=gin/baseline_supervised_mlp.gin --model_dir=DIR`` (and
``gin/baseline_supervised_convnet.gin``). The raw-pixel baselines are probes without training:
``python eval_probe.py --pixels [--noise_std=0.05]``.
"""


import gin
import tensorflow as tf

from mi_tf import data as data_lib
from mi_tf import distribute
from mi_tf import evaluation
from mi_tf import optimizers
from mi_tf.encoders import MLP
from mi_tf.tasks import base

import keras


@gin.configurable
class SupervisedBaseline(base.Task):
  """min CE(y, head(g1(X1))) over g1 and a linear head (a supervised reference, not Sec. 3).

  Args:
    encoder: class of g1 (gin: @MLP or @ConvNet).
    num_classes: logits of the head (10).
    learning_rate: Adam learning rate of g1 and the head (1e-4, as the MI runs).
    adam_epsilon: Adam's epsilon (default 1e-8, the authors' TF1 AdamOptimizer; Keras: 1e-7).
    data: a ``mi_tf.data.ImageHalves`` (default: MNIST halves); only X1 and the labels are used.
  """

  name = 'supervised_baseline'
  finite_metrics = ('probe/test_accuracy',)

  def __init__(self, encoder=MLP, num_classes=10, learning_rate=1e-4, data=None,
               adam_epsilon=optimizers.AUTHORS_EPSILON):
    self.adam_epsilon = float(adam_epsilon)
    self.encoder_cls = encoder
    self.num_classes = int(num_classes)
    self.learning_rate = learning_rate
    self.data = data or data_lib.ImageHalves()

  def check_inputs(self):
    self.data.check()

  def build(self, global_batch_size, seed):
    del seed  # Initialisers are seeded by the training loop.
    self.global_batch_size = global_batch_size
    self.input_shape = self.data.input_shape
    self.g1 = self.encoder_cls(name='g1')
    self.head = keras.layers.Dense(self.num_classes, name='head')
    self.head(self.g1(tf.zeros((2,) + tuple(self.input_shape))))
    self.variables = self.g1.trainable_variables + self.head.trainable_variables
    self.optimizer = optimizers.FusedAdam(self.learning_rate, epsilon=self.adam_epsilon)
    self.optimizer.build(self.variables)

  def dataset_fn(self, global_batch_size, seed, start_step):
    return lambda ctx: self.data.train_dataset(global_batch_size, seed, ctx, start_step)

  def trackables(self):
    return {'g1': self.g1, 'head': self.head, 'optimizer': self.optimizer}

  def train_step(self, batch):
    """One Adam step on the global mean cross-entropy (replica context)."""
    x1, labels = batch['x1'], batch['label']
    with tf.GradientTape() as tape:
      logits = self.head(self.g1(x1, training=True), training=True)
      per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                    logits=logits)
      # This replica's share of the global mean: gradients are summed over replicas.
      replica_loss = tf.reduce_sum(per_example) / self.global_batch_size
    grads = tape.gradient(replica_loss, self.variables)
    loss = distribute.all_reduce_sum(replica_loss)
    grad_norm, finite = base.apply_if_finite(self.optimizer, loss, grads, self.variables)
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32))
    accuracy = distribute.all_reduce_sum(correct) / self.global_batch_size
    return {'loss': loss, 'accuracy': accuracy, 'grad_norm': grad_norm, 'finite': finite}

  def evaluate(self, step, final=False):
    f_tr, y_tr, f_te, y_te, results = evaluation.encode_eval_splits(self.data, self.g1)
    results.update(evaluation.head_metrics(self.head, f_te, y_te)[0])
    results.update(evaluation.probe_metrics(f_tr, y_tr, f_te, y_te,
                                            converged=step == 0 or final))
    return results

  def metadata(self):
    return dict(super().metadata(), learning_rate=self.learning_rate)
