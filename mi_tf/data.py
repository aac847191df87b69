"""Input pipelines: TFDS images -> [0, 1] -> top half X1 and bottom half X2 (Sec. 3).

MNIST (and CIFAR-10, same code path) is read once from TensorFlow Datasets into memory as
uint8 (MNIST train: 47 MB) and served by tf.data from there, so the decode never limits
training; the training order is a pure function of (seed, step) (``index_stream``), so a
resumed run continues the exact stream and checkpoints hold no iterator state.

Halves are kept as images [H/2, W, C] (MNIST: 14x28x1, CIFAR-10: 16x32x3); encoders on vectors
flatten them, which gives exactly the paper's X1 = first 392 of the 784 flattened pixels.
Optional *coupled* noise (Sec. 3.1, residual MLP): ONE vector n ~ N(0, std^2) per example is
added to both halves, X1 + n and X2 + n.

``ImageHalves`` is the data object the image tasks are given (``MIMaximization.data``, gin:
``ImageHalves.dataset = 'mnist'``): one dataset, its splits and its noise, with the training
stream and the evaluation splits.
"""

import functools
import logging
import os
import re
import socket

import gin
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mi_tf import timing

_LOG = logging.getLogger(__name__)


class DataNotFoundError(RuntimeError):
  """Prepared TFDS data is missing and cannot (or may not) be downloaded."""


class CorruptDataError(RuntimeError):
  """A file of prepared TFDS data cannot be read (truncated, or corrupt)."""


def _split_name(split):
  """'train[:2000]' -> 'train'."""
  return re.split(r'[\[+]', split, maxsplit=1)[0].strip()


def _network_reachable(timeout_s=3.0):
  """Whether TFDS's download host answers within a few seconds (it retries ~200 s if not)."""
  try:
    socket.create_connection(('storage.googleapis.com', 443), timeout=timeout_s).close()
    return True
  except OSError:
    return False


def check_available(dataset='mnist', split='train', data_dir=None, download=None):
  """Checks, in seconds, that ``dataset``/``split`` can be loaded; returns the builder.

  Args:
    dataset: TFDS name ('mnist', 'cifar10').
    split: TFDS split string, possibly sliced ('train', 'test[:1000]').
    data_dir: TFDS data directory; None means TFDS's default (honours TFDS_DATA_DIR).
    download: True to let TFDS download and prepare missing data, False to never try, None
      (default) to download only when no data_dir was given, no TFDS_DATA_DIR is set and the
      network answers.

  Raises:
    DataNotFoundError: with one message naming the directory and what to do.
    ValueError: unknown dataset or split, a split string TFDS cannot parse ('train[:abc]'),
      a slice beyond the split's examples, or an empty selection.
  """
  try:
    builder = tfds.builder(dataset, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(f'Unknown TFDS dataset {dataset!r}: {str(e).splitlines()[0]}') from None
  prepared = tf.io.gfile.exists(os.path.join(builder.data_dir, 'dataset_info.json'))
  if not prepared:
    explicit_dir = data_dir is not None or 'TFDS_DATA_DIR' in os.environ
    if download is None:
      download = not explicit_dir and _network_reachable()
    if not download:
      raise DataNotFoundError(
          f'No prepared TFDS data for {dataset!r} in {builder.data_dir} (data_dir='
          f'{data_dir or os.environ.get("TFDS_DATA_DIR") or "TFDS default"}). Either point '
          f'data_dir (or TFDS_DATA_DIR) at a folder that holds {dataset}/<version>/, e.g. '
          '../shared/data/tensorflow_datasets for MNIST on machines without network, or, with '
          f'network, prepare it once: `tfds build {dataset} --data_dir=<dir>` (or pass '
          'download=True).')
    _LOG.info('Downloading and preparing %s into %s', dataset, builder.data_dir)
    builder.download_and_prepare()
  name = _split_name(split)
  if name not in builder.info.splits:
    raise ValueError(f'Dataset {dataset!r} has no split {name!r}; it has '
                     f'{sorted(builder.info.splits)}.')
  num_examples = split_size(builder, split)
  if num_examples < 1:
    raise ValueError(f'Split {split!r} of {dataset!r} selects no examples.')
  return builder


def split_size(builder, split):
  """Number of examples of a TFDS split string (slices and '+' allowed), from the dataset's
  metadata alone (nothing is read).

  Raises:
    ValueError: one message, for a split string TFDS cannot parse or a slice out of range.
  """
  try:
    return int(builder.info.splits[split].num_examples)
  except (ValueError, KeyError, TypeError) as e:
    reason = (str(e).strip().splitlines() or [type(e).__name__])[-1]
    reason = re.sub(r'\s*See format at \S+', '', reason).rstrip('. ') + '.'
    raise ValueError(
        f'Bad split {split!r} of {builder.info.name!r}: {reason} A split is a name, optionally '
        "sliced: 'train', 'train[:2000]', 'test[:10%]', 'train[:1000]+test'.") from None


@functools.lru_cache(maxsize=8)
def load_images(dataset='mnist', split='train', data_dir=None, download=None):
  """Loads a whole split into memory, in TFDS's stored order.

  Returns:
    (images uint8 [N, H, W, C], labels int64 [N]) as numpy arrays (read-only; cached).
  Raises:
    CorruptDataError: a file of the split cannot be read (truncated or corrupt).
  """
  builder = check_available(dataset, split, data_dir, download)
  try:
    data = builder.as_dataset(split=split, batch_size=-1, shuffle_files=False)
    data = tfds.as_numpy(data)
  except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
    bad = unreadable_files(builder, _split_name(split))
    if not bad:
      raise
    raise CorruptDataError(
        f'The prepared TFDS data of {dataset!r} in {builder.data_dir} cannot be read: '
        + '; '.join(f'{path} ({why})' for path, why in bad) + '. Re-prepare the dataset: '
        f'delete {builder.data_dir} and run `tfds build {dataset} --data_dir=<dir>` (or copy '
        'it again from a good copy).') from e
  images, labels = data['image'], data['label'].astype(np.int64)
  images.setflags(write=False)
  labels.setflags(write=False)
  return images, labels


def unreadable_files(builder, split_name):
  """[(path, reason)] of the split's TFRecord files that cannot be read to their end."""
  pattern = os.path.join(builder.data_dir, f'{builder.name}-{split_name}.tfrecord*')
  bad = []
  for path in sorted(tf.io.gfile.glob(pattern)):
    try:
      for _ in tf.data.TFRecordDataset(path).batch(10000):
        pass
    except tf.errors.OpError as e:
      reason = re.sub(r'\{\{.*?\}\}\s*|\s*\[Op:.*$', '', e.message.strip().splitlines()[0])
      bad.append((path, reason or type(e).__name__))
  return bad


def half_shape(image_shape):
  """Shape [H/2, W, C] of one half of an image of shape [H, W, C]."""
  h, w, c = image_shape
  return (h // 2, w, c)


def to_halves(images, noise_std=0.0, noise_seed=None):
  """uint8 images [B, H, W, C] -> (x1 top half, x2 bottom half), float32 in [0, 1] (+ noise).

  Args:
    images: uint8 (or float in [0, 255]) tensor [B, H, W, C].
    noise_std: std of the coupled noise; 0 for none.
    noise_seed: int32 tensor [2] for ``tf.random.stateless_normal`` (needed if noise_std > 0).

  Returns:
    x1, x2: float32 [B, H/2, W, C]; with noise, the SAME draw n is added to both halves.
  """
  x = tf.cast(images, tf.float32) / 255.0
  h = x.shape[1] // 2
  x1, x2 = x[:, :h], x[:, x.shape[1] - h:]
  if noise_std:
    noise = tf.random.stateless_normal(tf.shape(x1), seed=noise_seed, stddev=noise_std)
    x1, x2 = x1 + noise, x2 + noise
  return x1, x2


def index_stream(num_examples, seed, start_position=0):
  """Example indices in training order: epoch e is a stateless random permutation (seed, e).

  The order is a pure function of (seed, position), so a run resumed at step s reads exactly
  the batches an uninterrupted run would have read, under any tf.distribute strategy, and a
  checkpoint needs no iterator state (TF 2.21 cannot checkpoint distributed iterators). Each
  epoch is a full shuffle, which mixes at least as well as the paper's 1,000-element buffer.

  Returns:
    tf.data.Dataset of (position int64, example index int64), positions from start_position.
  """
  start_epoch, offset = divmod(int(start_position), int(num_examples))

  def epoch(e):
    perm = tf.random.experimental.stateless_shuffle(
        tf.range(num_examples, dtype=tf.int64), seed=tf.stack([tf.cast(seed, tf.int64), e]))
    return tf.data.Dataset.from_tensor_slices(perm)

  ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch).skip(offset)
  return tf.data.Dataset.zip(tf.data.Dataset.range(start_position, 2**62), ds)


def train_dataset(dataset='mnist', split='train', data_dir=None, batch_size=128, seed=0,
                  noise_std=0.0, input_context=None, start_step=0, download=None):
  """The training stream of per-replica batches of halves (+ coupled noise), from a step on.

  The global batch of step k holds stream positions [k B, (k + 1) B) (see ``index_stream``);
  replica g of R takes rows [g b, (g + 1) b) with b = B / R, so the global batch, and hence the
  estimator, is the same on one device and on many. Noise for the example at position i is the
  stateless draw (seed, i): also independent of the strategy.

  Args:
    batch_size: GLOBAL batch size B.
    seed: seeds the order and the noise.
    input_context: ``tf.distribute.InputContext`` from ``distribute_datasets_from_function``.
    start_step: first step to produce (resuming).

  Returns:
    tf.data.Dataset of dicts {'x1', 'x2': float32 [b, H/2, W, C], 'label': int64 [b]}.
  """
  images, labels = load_images(dataset, split, data_dir, download)
  replicas, pipelines, pipeline = 1, 1, 0
  if input_context is not None:
    replicas = input_context.num_replicas_in_sync
    pipelines, pipeline = input_context.num_input_pipelines, input_context.input_pipeline_id
  if batch_size % replicas:
    raise ValueError(f'batch_size {batch_size} is not divisible by {replicas} replicas.')
  per_replica = batch_size // replicas
  rows_per_pipeline = batch_size // pipelines
  images_t, labels_t = tf.constant(images), tf.constant(labels)
  ds = index_stream(len(images), seed, start_step * batch_size)
  if pipelines > 1:  # Keep this worker's rows of every global batch.
    ds = ds.filter(lambda pos, idx: (pos % batch_size) // rows_per_pipeline == pipeline)

  def _example(pos, idx):
    example = {'image': tf.gather(images_t, idx), 'label': tf.gather(labels_t, idx)}
    if noise_std:
      example['noise_seed'] = tf.stack([tf.fill(tf.shape(pos), tf.cast(seed, tf.int64)), pos],
                                       axis=1)  # [b, 2]: one stateless seed per example.
    return example

  def _halves(batch):
    if noise_std:
      x1, x2 = to_halves(batch['image'])
      noise = tf.map_fn(
          lambda s: tf.random.stateless_normal(tf.shape(x1)[1:], seed=s, stddev=noise_std),
          batch['noise_seed'], fn_output_signature=tf.float32)
      x1, x2 = x1 + noise, x2 + noise
    else:
      x1, x2 = to_halves(batch['image'])
    return {'x1': x1, 'x2': x2, 'label': batch['label']}

  ds = ds.batch(per_replica, drop_remainder=True)
  ds = ds.map(lambda pos, idx: _example(pos, idx), num_parallel_calls=tf.data.AUTOTUNE)
  return ds.map(_halves, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


@functools.lru_cache(maxsize=8)
def eval_halves(dataset='mnist', split='test', data_dir=None, noise_std=0.0, noise_seed=0,
                download=None):
  """A whole split as halves, in order (for probes and test-split estimator values).

  With noise, example i gets the fixed draw of stateless seed (noise_seed, i), so every
  evaluation of a run sees the same noisy inputs.

  Returns:
    (x1, x2 float32 [N, H/2, W, C], labels int64 [N]) as numpy arrays (read-only; cached).
  """
  images, labels = load_images(dataset, split, data_dir, download)
  x1s, x2s = [], []
  chunk = 10000
  for start in range(0, len(images), chunk):
    seed = tf.constant([noise_seed, -(start // chunk) - 1], tf.int64)  # Disjoint from training.
    x1, x2 = to_halves(images[start:start + chunk], noise_std, seed if noise_std else None)
    x1s.append(x1.numpy())
    x2s.append(x2.numpy())
  x1, x2 = np.concatenate(x1s), np.concatenate(x2s)
  for a in (x1, x2):
    a.setflags(write=False)
  return x1, x2, labels


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

  SPLITS = ('train_split', 'probe_train_split', 'test_split')

  def check(self):
    """Fails fast (seconds, nothing is read) with one message if any split cannot be loaded:
    data not found, an unknown split, a split string TFDS cannot parse, a slice out of range
    (``check_available``). Returns the TFDS builder."""
    for split in (self.train_split, self.probe_train_split, self.test_split):
      builder = check_available(self.dataset, split, self.data_dir, self.download)
    return builder

  def identity(self):
    """What the data is, not where it lives (``data_dir`` is left out).

    Returns:
      {'dataset': TFDS name, 'version': TFDS version ('3.0.1'), 'splits': {'train_split':
      {'split': 'train[:2000]', 'num_examples': 2000}, 'probe_train_split': ...,
      'test_split': ...}}: a run records it in run_info.json and resumes only on equal data.
    """
    builder = self.check()
    splits = {role: {'split': getattr(self, role),
                     'num_examples': split_size(builder, getattr(self, role))}
              for role in self.SPLITS}
    return {'dataset': builder.info.name, 'version': str(builder.info.version),
            'splits': splits}

  @property
  def input_shape(self):
    """Shape of one half, e.g. (14, 28, 1) for MNIST."""
    builder = check_available(self.dataset, self.train_split, self.data_dir,
                                       self.download)
    return half_shape(builder.info.features['image'].shape)

  def train_dataset(self, batch_size, seed, input_context=None, start_step=0):
    return train_dataset(self.dataset, self.train_split, self.data_dir, batch_size,
                                  seed, self.noise_std, input_context=input_context,
                                  start_step=start_step, download=self.download)

  def eval_split(self, which, noise_seed=0):
    """'train' or 'test' -> (x1, x2, labels), whole split in order."""
    split = self.probe_train_split if which == 'train' else self.test_split
    with timing.EVAL_TIMINGS.timed('load_splits'):  # Decoded once per process (cached).
      return eval_halves(self.dataset, split, self.data_dir, self.noise_std,
                                  noise_seed, self.download)
