"""Numerical guards: an NWJ run whose scores overflow stops with a message naming the step and
the quantity, or skips such steps by policy; NaN or inf never reaches a checkpoint."""

import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import GIN_DIR, TINY_BINDINGS
from mi_tf import metrics_log
from mi_tf import train_lib
from mi_tf import launch

GIN = str(GIN_DIR / 'sec3_2_critics_bilinear_nwj.gin')
# Adam at lr 1 makes the bilinear scores huge at once: exp(S - 1) overflows float32.
UNSTABLE = TINY_BINDINGS + ('train.num_steps = 20', 'train.eval_every = 10',
                            'train.checkpoint_every = 2', 'MIMaximization.learning_rate = 1.0')


def _all_finite(model_dir):
  path = tf.train.latest_checkpoint(str(model_dir / 'checkpoints'))
  reader = tf.train.load_checkpoint(path)
  for name in reader.get_variable_to_shape_map():
    value = reader.get_tensor(name)
    if isinstance(value, np.ndarray) and value.dtype.kind == 'f':
      assert np.all(np.isfinite(value)), name
  return path


def test_overflow_stops_with_step_and_quantity(tmp_path):
  model_dir = tmp_path / 'run'
  with pytest.raises(train_lib.NonFiniteError) as err:
    launch.train_with_gin(str(model_dir), [GIN], UNSTABLE)
  message = str(err.value)
  assert 'Non-finite training step' in message and 'loss = ' in message
  assert 'gradient norm = ' in message
  if tf.train.latest_checkpoint(str(model_dir / 'checkpoints')):
    _all_finite(model_dir)


def test_skip_policy_finishes_with_finite_weights_and_counts_skips(tmp_path):
  model_dir = tmp_path / 'run'
  launch.train_with_gin(str(model_dir), [GIN],
                           UNSTABLE + ("train.nonfinite_policy = 'skip'",))
  assert _all_finite(model_dir).endswith('-20')
  skipped = [r['value'] for r in metrics_log.read(str(model_dir))
             if r['metric'] == 'skipped_steps']
  assert skipped[-1] >= 1 and all(math.isfinite(v) for v in skipped)
