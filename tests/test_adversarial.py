"""The adversarial invertible encoder of Sec. 3.1 (Fig. 1c, App. B; mi_tf/tasks/adversarial.py):
the warm-up and the 10:1 head/encoder schedule counted in optimizer updates, the data stream
on resume, the direction of the encoder's objective, and a run through the training loop."""

import functools

import numpy as np
import pytest
import tensorflow as tf

from conftest import GIN_DIR, TINY_BINDINGS
from mi_tf import data as data_lib
from mi_tf import launch
from mi_tf import metrics_log
from mi_tf.tasks.adversarial import AdversarialInvertible
from mi_tf.encoders import RealNVP

BATCH = 16


def _small_task(coupling='affine', warmup_steps=5, **kwargs):
  halves = data_lib.ImageHalves(train_split='train[:512]', probe_train_split='train[:512]',
                                test_split='test[:256]')
  encoder = functools.partial(RealNVP, num_couplings=2, hidden_units=(32, 32),
                              coupling=coupling, seed=0)
  task = AdversarialInvertible(encoder=encoder, warmup_steps=warmup_steps,
                               head_steps_per_step=10, data=halves, **kwargs)
  task.build(BATCH, seed=0)
  return task


def _updates(task):
  return (int(task.head_optimizer.iterations.numpy()),
          int(task.encoder_optimizer.iterations.numpy()))


def test_warm_up_then_ten_head_steps_per_encoder_step():
  task = _small_task(warmup_steps=5)
  assert _updates(task) == (0, 0)
  make_dataset = task.dataset_fn(BATCH, 0, 0)  # The loop asks for the stream: warm-up.
  assert _updates(task) == (5, 0)
  assert task.warmup_updates == 5
  step = tf.function(task.train_step)
  for k, batch in enumerate(make_dataset(None).take(3)):
    assert batch['x1'].shape == (11, BATCH, 14, 28, 1)
    out = step(batch)
    assert float(out['finite']) == 1.0
    assert _updates(task) == (5 + 10 * (k + 1), k + 1)
  # Asking again (a resumed run) does not repeat the warm-up.
  task.dataset_fn(BATCH, 0, 3)
  assert _updates(task) == (35, 3)
  assert task.warmup_updates == 5


def test_stream_skips_the_warm_up_batches_and_resumes_exactly():
  task = _small_task(warmup_steps=4)
  stream = list(task.data.train_dataset(BATCH, 0, None, 0).take(4 + 11 * 3))
  from_start = list(task.dataset_fn(BATCH, 0, 0)(None).take(3))
  resumed = next(iter(task.dataset_fn(BATCH, 0, 2)(None)))
  for k in range(3):
    for i in range(11):
      np.testing.assert_array_equal(from_start[k]['x1'][i], stream[4 + 11 * k + i]['x1'])
      np.testing.assert_array_equal(from_start[k]['label'][i],
                                    stream[4 + 11 * k + i]['label'])
  np.testing.assert_array_equal(resumed['x1'], from_start[2]['x1'])


def test_encoder_step_lowers_the_cross_entropy_to_uniform():
  # Head frozen (lr 0), so the encoder's step is the only change. The global seed first: the
  # head's initial weights come from Keras' global generator, which earlier tests in the
  # same process move (unseeded, the decrease was 0.75e-3 in one order of the suite).
  tf.keras.utils.set_random_seed(0)
  task = _small_task(coupling='additive', warmup_steps=0, head_learning_rate=0.0,
                     encoder_learning_rate=1e-3)
  batch = next(iter(task.dataset_fn(BATCH, 0, 0)(None)))
  head_weights = [v.numpy() for v in task.head.variables]
  out = tf.function(task.train_step)(batch)

  def ce_to_uniform():
    logits = task.head(task.g1(batch['x1'][10]))
    return float(-tf.reduce_mean(tf.nn.log_softmax(logits)))

  after = ce_to_uniform()
  # Lower by far more than float32 round-off (about 2e-7 at 2.35).
  assert after < float(out['loss']) - 2e-4
  for a, b in zip(head_weights, task.head.variables):
    np.testing.assert_array_equal(a, b.numpy())


def test_head_learns_the_labels_during_the_warm_up():
  task = _small_task(coupling='additive', warmup_steps=60, head_learning_rate=1e-2)
  before = task.evaluate(0)['head/test_accuracy']
  task.dataset_fn(BATCH, 0, 0)
  after = task.evaluate(0)
  assert after['head/test_accuracy'] > before + 0.3
  assert after['head/updates'] == 60 and after['encoder/updates'] == 0
  assert 0 < after['probe/test_accuracy'] <= 1


def test_training_loop_counts_and_resume(tmp_path):
  model_dir = str(tmp_path / 'run')
  gin_file = str(GIN_DIR / 'sec3_1_adversarial.gin')
  bindings = TINY_BINDINGS + ('AdversarialInvertible.warmup_steps = 7',)
  launch.train_with_gin(model_dir, [gin_file], bindings)
  records = [r for r in metrics_log.read(model_dir) if r['split'] == 'eval']
  head = {r['step']: r['value'] for r in records if r['metric'] == 'head/updates'}
  encoder = {r['step']: r['value'] for r in records if r['metric'] == 'encoder/updates'}
  assert head == {0: 7, 2: 27, 4: 47}
  assert encoder == {0: 0, 2: 2, 4: 4}
  reader = tf.train.load_checkpoint(model_dir + '/checkpoints')
  names = reader.get_variable_to_shape_map()
  iterations = {n.split('/')[0]: int(reader.get_tensor(n)) for n in names
                if n.endswith('iterations/.ATTRIBUTES/VARIABLE_VALUE')}
  assert iterations == {'head_optimizer': 47, 'encoder_optimizer': 4}
  # Rerunning the finished run restores it and evaluates again: no second warm-up.
  launch.train_with_gin(model_dir, [gin_file], bindings)
  last = [r for r in metrics_log.read(model_dir)
          if r['split'] == 'eval' and r['metric'] == 'head/updates']
  assert last[-1]['value'] == 47


@pytest.mark.parametrize('name,head_lr,encoder_lr', [
    ('sec3_1_adversarial.gin', 1e-4, 1e-6),
    ('sec3_1_adversarial_colab_lr.gin', 1e-3, 1e-5)])
def test_gin_files_bind_the_paper_and_colab_learning_rates(name, head_lr, encoder_lr):
  import gin  # pylint: disable=g-import-not-at-top
  gin.add_config_file_search_path(str(GIN_DIR))
  gin.parse_config_file(str(GIN_DIR / name))
  assert gin.query_parameter('train.task').configurable.name == 'AdversarialInvertible'
  task = AdversarialInvertible()  # Takes its parameters from the parsed file.
  assert (task.head_learning_rate, task.encoder_learning_rate) == (head_lr, encoder_lr)
  assert (task.warmup_steps, task.head_steps_per_step) == (1000, 10)
  assert gin.query_parameter('train.num_steps') == 4000
  assert gin.query_parameter('train.eval_every') == 400
  assert gin.query_parameter('RealNVP.coupling') == 'affine'
