"""Shared test setup: real MNIST from ../shared/data, TF log noise off, gin cleared per test."""

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED_TFDS = REPO.parent / 'shared' / 'data' / 'tensorflow_datasets'
if 'TFDS_DATA_DIR' not in os.environ and _SHARED_TFDS.is_dir():
  os.environ['TFDS_DATA_DIR'] = str(_SHARED_TFDS)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import gin  # noqa: E402
import pytest  # noqa: E402

GIN_DIR = REPO / 'gin'

# Bindings that shrink any experiment to a few seconds on a real MNIST subset.
TINY_BINDINGS = (
    'train.num_steps = 4',
    'train.batch_size = 16',
    'train.eval_every = 2',
    'train.log_every = 2',
    'train.checkpoint_every = 2',
    "ImageHalves.train_split = 'train[:512]'",
    "ImageHalves.probe_train_split = 'train[:512]'",
    "ImageHalves.test_split = 'test[:256]'",
    'MIMaximization.eval_batch_size = 16',
    'MIMaximization.train_estimate_examples = 256',
)


def experiment_gin_files():
  """Every runnable experiment file (gin/common/ holds include-only fragments)."""
  return sorted(p for p in GIN_DIR.glob('*.gin'))


@pytest.fixture(autouse=True)
def _clear_gin():
  gin.clear_config()
  yield
  gin.clear_config()
