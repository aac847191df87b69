"""A damaged newest checkpoint is skipped: the rerun falls back to the previous one, with a
warning naming the files, and ends with exactly the weights of an undamaged run.

A tiny real run (the Gaussian toy of Sec. 4, 4 steps, checkpoints at 2 and 4, deterministic)
is trained once; each case copies it, removes final_metrics.json (a run stopped after its
last checkpoint), damages a file of ckpt-4 and reruns it in-process. A damaged state file of
the checkpoint manager (``checkpoint``) is rewritten from the checkpoint files, and the newest
checkpoint restored (tested on a small checkpoint: no training is needed).
"""

import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import GIN_DIR, TINY_BINDINGS, checkpoint_weights, metrics_without_timing
from mi_tf import launch
from mi_tf import run_dir as run_dir_lib

GIN = str(GIN_DIR / 'sec4_iid.gin')
BINDINGS = TINY_BINDINGS + ('train.deterministic = True',)
DATA = 'ckpt-4.data-00000-of-00001'
INDEX = 'ckpt-4.index'
STATE = run_dir_lib.STATE_FILE


def _train(model_dir):
  return launch.train_with_gin(model_dir, [GIN], BINDINGS)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp('reference') / 'run')
  assert _train(model_dir)['step'] == 4
  names = sorted(os.listdir(os.path.join(model_dir, 'checkpoints')))
  assert names == [STATE, 'ckpt-2.data-00000-of-00001', 'ckpt-2.index', DATA, INDEX]
  assert os.path.getsize(os.path.join(model_dir, 'checkpoints', DATA)) > 1000
  return model_dir


def _truncate(size):
  def damage(path):
    with open(path, 'r+b') as f:
      f.truncate(size(os.path.getsize(path)))
  return damage


def _garble(path):
  data = bytearray(open(path, 'rb').read())
  for i in range(0, len(data), 7):
    data[i] ^= 0xA5  # Also makes the text of the state file invalid UTF-8.
  with open(path, 'wb') as f:
    f.write(bytes(data))


# Damages of the newest checkpoint's files (each run trains steps 3-4 again).
DAMAGES = {
    'data_empty': (DATA, _truncate(lambda n: 0)),
    'data_1000_bytes': (DATA, _truncate(lambda n: 1000)),
    'data_half': (DATA, _truncate(lambda n: n // 2)),
    'data_garbled': (DATA, _garble),
    'index_empty': (INDEX, _truncate(lambda n: 0)),
    'index_garbled': (INDEX, _garble),
}
# Damages of the manager's state file (the checkpoints are intact: no training needed).
STATE_DAMAGES = {'garbled': _garble, 'empty': _truncate(lambda n: 0), 'deleted': os.remove}


def _stopped_copy(reference, path):
  model_dir = str(path / 'run')
  shutil.copytree(reference, model_dir)
  os.remove(os.path.join(model_dir, run_dir_lib.FINAL_METRICS_FILE))
  return model_dir


def _strict_json(path):
  def refuse(constant):
    raise ValueError(f'{path} holds {constant}: not JSON')
  with open(path) as f:
    return json.loads(f.read(), parse_constant=refuse)


@pytest.mark.parametrize('damage', sorted(DAMAGES))
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(reference, damage, tmp_path,
                                                             caplog):
  model_dir = _stopped_copy(reference, tmp_path)
  name, fn = DAMAGES[damage]
  fn(os.path.join(model_dir, 'checkpoints', name))
  with caplog.at_level(logging.INFO, logger='mi_tf'):
    final = _train(model_dir)
  assert final['step'] == 4
  warnings = [r.getMessage() for r in caplog.records
              if r.levelno == logging.WARNING and r.name == 'mi_tf.run_dir']
  resumed = [r.getMessage() for r in caplog.records if r.getMessage().startswith('Resumed')]
  assert f'Checkpoint {model_dir}/checkpoints/ckpt-4 cannot be read' in warnings[0]
  assert f'files: {DATA}, {INDEX};' in warnings[0]
  assert f'Resumed from the older checkpoint {model_dir}/checkpoints/ckpt-2' in warnings[1]
  assert resumed[-1] == f'Resumed from {model_dir}/checkpoints/ckpt-2 at step 2.'
  # Exactly the undamaged run: restoring ckpt-2 gave every variable its value.
  want, got = checkpoint_weights(reference), checkpoint_weights(model_dir)
  assert sorted(got) == sorted(want)
  for key in want:
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  assert metrics_without_timing(model_dir) == metrics_without_timing(reference)
  # The manager knows both checkpoints again (its state file names them).
  state = tf.train.get_checkpoint_state(os.path.join(model_dir, 'checkpoints'))
  assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ['ckpt-2',
                                                                             'ckpt-4']
  json_files = [os.path.join(root, n) for root, _, names in os.walk(model_dir)
                for n in names if n.endswith('.json')]
  assert {os.path.basename(p) for p in json_files} >= {'final_metrics.json', 'run_info.json'}
  for path in json_files:
    _strict_json(path)


def test_no_readable_checkpoint_is_one_clear_error(reference, tmp_path):
  model_dir = _stopped_copy(reference, tmp_path)
  checkpoints = os.path.join(model_dir, 'checkpoints')
  _truncate(lambda n: n // 2)(os.path.join(checkpoints, DATA))
  _garble(os.path.join(checkpoints, 'ckpt-2.index'))
  with pytest.raises(RuntimeError) as e:
    _train(model_dir)
  message = str(e.value).splitlines()[0]  # gin adds a line naming the configurable.
  assert message.startswith(f'No readable checkpoint in {checkpoints}: ckpt-4 (')
  for part in (DATA, INDEX, 'ckpt-2.index', 'IndexError', 'sstable', 'start fresh'):
    assert part in message


def test_a_failed_restore_leaves_no_value_behind(tmp_path):
  """A checkpoint whose restore assigns some variables and then fails (it lacks one) is
  skipped; the previous checkpoint then gives every variable exactly its own value."""
  directory = str(tmp_path / 'checkpoints')
  a, b = tf.Variable([1.0, 2.0]), tf.Variable(3.0)
  checkpoint = tf.train.Checkpoint(a=a, b=b)
  manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=None)
  first = manager.save(checkpoint_number=1)
  other = tf.train.Checkpoint(a=tf.Variable([10.0, 20.0]))  # No b.
  tf.train.CheckpointManager(other, directory, max_to_keep=None).save(checkpoint_number=2)
  a.assign([-1.0, -1.0])
  b.assign(-1.0)
  manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=None)
  assert run_dir_lib.restore_newest(manager, checkpoint) == first
  reader = tf.train.load_checkpoint(first)
  np.testing.assert_array_equal(a.numpy(), reader.get_tensor('a/.ATTRIBUTES/VARIABLE_VALUE'))
  assert b.numpy() == reader.get_tensor('b/.ATTRIBUTES/VARIABLE_VALUE') == 3.0


def _two_checkpoints(directory):
  """(checkpoint of a variable a, (its prefixes)): a is 1.0 in ckpt-1, 2.0 in ckpt-2."""
  a = tf.Variable(1.0)
  checkpoint = tf.train.Checkpoint(a=a)
  manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)
  first = manager.save(checkpoint_number=1)
  a.assign(2.0)
  return checkpoint, (first, manager.save(checkpoint_number=2))


@pytest.mark.parametrize('damage', sorted(STATE_DAMAGES))
def test_a_damaged_state_file_is_rewritten_and_the_newest_checkpoint_restored(
    damage, tmp_path, caplog):
  run = run_dir_lib.RunDir(str(tmp_path))
  directory = run.join(run_dir_lib.CHECKPOINTS)
  checkpoint, (first, second) = _two_checkpoints(directory)
  STATE_DAMAGES[damage](os.path.join(directory, STATE))
  checkpoint.a.assign(0.0)
  with caplog.at_level(logging.WARNING, logger='mi_tf.run_dir'):
    manager = run.checkpoint_manager(checkpoint, max_to_keep=2)  # As the training loop does.
    assert run_dir_lib.restore_newest(manager, checkpoint) == second
  assert checkpoint.a.numpy() == 2.0
  [warning] = [r.getMessage() for r in caplog.records if r.name == 'mi_tf.run_dir']
  assert os.path.join(directory, STATE) in warning and '(ckpt-1, ckpt-2)' in warning
  # The manager knows the older checkpoint again: it deletes it when it keeps only two.
  assert manager.checkpoints == [first, second]
  manager.save(checkpoint_number=3)
  assert not tf.io.gfile.exists(first + '.index')
  assert run_dir_lib.repair_checkpoint_state(directory) is False  # Nothing to repair now.


def test_a_checkpoint_without_files_is_skipped(tmp_path, caplog):
  # The state file names ckpt-2, whose files are gone (a copy that lost them).
  directory = str(tmp_path / 'checkpoints')
  checkpoint, (first, second) = _two_checkpoints(directory)
  for path in tf.io.gfile.glob(second + '.*'):
    os.remove(path)
  checkpoint.a.assign(0.0)
  manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)
  assert manager.latest_checkpoint == second
  with caplog.at_level(logging.WARNING, logger='mi_tf.run_dir'):
    assert run_dir_lib.restore_newest(manager, checkpoint) == first
  assert checkpoint.a.numpy() == 1.0
  assert f'Checkpoint {second} cannot be read (files: (no files); NotFoundError' in (
      caplog.records[0].getMessage())
