"""Random stand-ins for TFDS datasets that are not on this machine (CIFAR-10), for tests.

``tfds.testing.mock_data`` replaces TFDS's reading with random examples of the dataset's real
features (CIFAR-10: uint8 images 32x32x3, labels 0-9), but its split list comes from metadata
files, and tfds 4.9.10 ships none for CIFAR-10. ``mock_dataset`` writes a minimal
dataset_info.json (real features, made-up split sizes) into a temporary folder and mocks TFDS
with it, so the project's real loading code (``mi_tf.data.check_available``, ``load_images``,
``train_dataset``, ``eval_halves``) runs unchanged. The data module's caches are cleared on
entry and exit, so mock images never reach another test.
"""

import contextlib
import os
import tempfile

import tensorflow_datasets as tfds

from mi_tf import data as data_lib


def _clear_caches():
  data_lib.load_images.cache_clear()
  data_lib.eval_halves.cache_clear()


@contextlib.contextmanager
def mock_dataset(name='cifar10', num_examples=512, splits=('train', 'test')):
  """Within the block, TFDS ``name`` is random data: every split yields ``num_examples``."""
  with tempfile.TemporaryDirectory() as data_dir:
    builder = tfds.builder(name, data_dir=data_dir)
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=s, shard_lengths=[num_examples], num_bytes=0)
        for s in splits]))
    os.makedirs(builder.data_dir, exist_ok=True)
    builder.info.write_to_directory(builder.data_dir)
    _clear_caches()
    try:
      with tfds.testing.mock_data(num_examples=num_examples, data_dir=data_dir):
        yield data_dir
    finally:
      _clear_caches()
