"""Every file the training side writes is replaced atomically: a process killed between any
two steps of a replacement leaves the old or the new content, never a missing, empty or
partial file; an export left half-replaced is put back by the next start; every JSON file
is strict JSON.

A kill is simulated by raising at the k-th step (os.replace, tf.io.gfile.rename,
tf.io.gfile.rmtree, the SavedModel write), for every k: what is on disk then is what a kill
there leaves.
"""

import json
import logging
import math
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from mi_tf import export as export_lib
from mi_tf import files
from mi_tf import jsonl
from mi_tf import metrics_log
from mi_tf import run_dir as run_dir_lib

INPUT_SHAPE = (2, 3, 1)


class Killed(BaseException):
  """A simulated kill (a BaseException, as SystemExit: no ``except Exception`` stops it)."""


class KillAt:
  """Replaces functions by wrappers that count their calls and raise Killed at call ``k``
  (``k=None``: never; then ``calls`` is the number of steps)."""

  def __init__(self, monkeypatch, k, targets):
    self.k, self.calls = k, 0
    for owner, name in targets:
      monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name)))

  def _wrap(self, fn):
    def wrapper(*args, **kwargs):
      if self.k is not None and self.calls == self.k:
        raise Killed()
      self.calls += 1
      return fn(*args, **kwargs)
    return wrapper


def _listing(directory):
  return sorted(os.listdir(directory))


# ------------------------------------------------------------------ write_atomic

@pytest.mark.parametrize('step', ['fsync', 'replace'])
def test_write_atomic_killed_at_any_step_leaves_the_old_file(tmp_path, monkeypatch, step):
  path = tmp_path / 'run_info.json'
  path.write_text('old')
  KillAt(monkeypatch, 0, [(os, step)])  # After the temporary file is written; at the rename.
  with pytest.raises(Killed):
    files.write_atomic(str(path), 'new content')
  monkeypatch.undo()
  assert path.read_text() == 'old'
  assert _listing(tmp_path) == ['run_info.json']  # The temporary file was removed.
  files.write_atomic(str(path), 'new content')
  assert path.read_text() == 'new content'
  assert _listing(tmp_path) == ['run_info.json']


def test_write_atomic_through_gfile_killed_at_the_rename_leaves_the_old_file(monkeypatch):
  path = 'ram://atomic_files/final_metrics.json'
  files.write_atomic(path, 'old')
  KillAt(monkeypatch, 0, [(tf.io.gfile, 'rename')])
  with pytest.raises(Killed):
    files.write_atomic(path, 'new')
  monkeypatch.undo()
  assert files.read_text(path) == 'old'
  assert [n for n in tf.io.gfile.listdir('ram://atomic_files') if n.startswith('.')] == []
  files.write_atomic(path, 'new')
  assert files.read_text(path) == 'new'


# ------------------------------------------------------------------ metrics.jsonl

def _records(steps):
  return [{'step': s, 'split': split, 'metric': 'loss', 'value': float(s)}
          for s in steps for split in ('train', 'eval')]


def test_metrics_truncate_killed_leaves_the_old_file_and_a_rerun_truncates(tmp_path,
                                                                         monkeypatch):
  log = metrics_log.MetricsLog(str(tmp_path))
  text = ''.join(json.dumps(r) + '\n' for r in _records([0, 2, 4])) + '{"step": 6, "spl'
  (tmp_path / metrics_log.FILENAME).write_text(text)
  for k in range(2):  # fsync, then the rename.
    with monkeypatch.context() as m:
      KillAt(m, k, [(os, 'fsync'), (os, 'replace')])
      with pytest.raises(Killed):
        log.truncate_from(2)
    assert (tmp_path / metrics_log.FILENAME).read_text() == text
    assert _listing(tmp_path) == [metrics_log.FILENAME]
  kept = log.truncate_from(2)
  assert kept == _records([0]) + [_records([2])[0]]  # The evaluation at 2 is redone.
  assert metrics_log.read(str(tmp_path)) == kept
  assert (tmp_path / metrics_log.FILENAME).read_text().endswith('\n')


# ------------------------------------------------------------------ the export swap

@pytest.fixture(scope='module')
def encoder():
  model = tf.keras.Sequential([tf.keras.Input(INPUT_SHAPE), tf.keras.layers.Flatten(),
                               tf.keras.layers.Dense(3)])
  model(tf.zeros((1,) + INPUT_SHAPE))
  return model


@pytest.fixture(scope='module')
def old_run(tmp_path_factory, encoder):
  """A run directory whose export/ (step 1) holds an export of one evaluation, step_1/."""
  model_dir = str(tmp_path_factory.mktemp('old_run') / 'run')
  export_dir = os.path.join(model_dir, 'export')
  export_lib.export_encoder(encoder, export_dir, INPUT_SHAPE, {'step': 1})
  export_lib.export_encoder(encoder, os.path.join(export_dir, 'step_1'), INPUT_SHAPE,
                            {'step': 1})
  return model_dir


def _export_targets():
  return [(tf.io.gfile, 'rename'), (tf.io.gfile, 'rmtree'), (os, 'replace'),
          (tf.saved_model, 'save')]


def _count_steps(old_run, encoder, tmp_path, monkeypatch):
  model_dir = str(tmp_path / 'count')
  shutil.copytree(old_run, model_dir)
  with monkeypatch.context() as m:
    counter = KillAt(m, None, _export_targets())
    export_lib.export_encoder(encoder, os.path.join(model_dir, 'export'), INPUT_SHAPE,
                              {'step': 2})
  return counter.calls


def _step_of(export_dir):
  assert export_lib.is_complete(export_dir), os.listdir(export_dir)
  return export_lib.load_metadata(export_dir)['step']


def test_export_killed_between_any_two_steps_is_recovered_by_the_next_start(
    old_run, encoder, tmp_path, monkeypatch):
  steps = _count_steps(old_run, encoder, tmp_path, monkeypatch)
  # SavedModel write, metadata rename, old away, new in, step_1 moved, old removed.
  assert steps == 6
  outcomes = set()
  for k in range(steps):
    model_dir = str(tmp_path / f'killed_at_{k}')
    shutil.copytree(old_run, model_dir)
    export_dir = os.path.join(model_dir, 'export')
    with monkeypatch.context() as m:
      KillAt(m, k, _export_targets())
      with pytest.raises(Killed):
        export_lib.export_encoder(encoder, export_dir, INPUT_SHAPE, {'step': 2})
    # What the kill left: the old or the new export in place, or (between the two renames)
    # none in place and a complete copy of each beside it.
    if os.path.isdir(export_dir):
      assert _step_of(export_dir) in (1, 2)
    else:
      beside = [os.path.join(model_dir, n) for n in _listing(model_dir) if n.startswith('.')]
      assert sorted(_step_of(p) for p in beside) == [1, 2]
    # The next start (RunDir.recover) puts the export back and removes every leftover.
    done = run_dir_lib.RunDir(model_dir).recover()
    assert bool(done) == (k > 0)  # Killed at the first step: nothing was left over.
    step = _step_of(export_dir)
    outcomes.add(step)
    assert step == (2 if k >= 3 else 1), k  # From the rename of the new one into place on.
    assert _step_of(os.path.join(export_dir, 'step_1')) == 1
    assert _listing(model_dir) == ['export']
    assert not [n for n in _listing(export_dir) if n.startswith('.')]
    assert run_dir_lib.RunDir(model_dir).recover() == []
    encode, shape = export_lib.load_encoder(export_dir)
    assert shape == INPUT_SHAPE
    np.testing.assert_allclose(encode(np.ones((1,) + INPUT_SHAPE, np.float32)).numpy(),
                               encoder(np.ones((1,) + INPUT_SHAPE, np.float32)).numpy(),
                               rtol=1e-6)
  assert outcomes == {1, 2}


def test_an_export_recovers_leftovers_first_and_keeps_the_step_exports(old_run, encoder,
                                                                      tmp_path, monkeypatch):
  model_dir = str(tmp_path / 'run')
  shutil.copytree(old_run, model_dir)
  export_dir = os.path.join(model_dir, 'export')
  with monkeypatch.context() as m:  # Killed after the old export was renamed away.
    KillAt(m, 3, _export_targets())
    with pytest.raises(Killed):
      export_lib.export_encoder(encoder, export_dir, INPUT_SHAPE, {'step': 2})
  assert not os.path.exists(export_dir)
  export_lib.export_encoder(encoder, export_dir, INPUT_SHAPE, {'step': 3})
  assert _step_of(export_dir) == 3
  assert _step_of(os.path.join(export_dir, 'step_1')) == 1
  assert _listing(model_dir) == ['export']


def test_a_session_start_recovers_the_export(old_run, encoder, tmp_path, monkeypatch,
                                             caplog):
  model_dir = str(tmp_path / 'run')
  shutil.copytree(old_run, model_dir)
  export_dir = os.path.join(model_dir, 'export')
  with monkeypatch.context() as m:  # Killed between the two renames.
    KillAt(m, 3, _export_targets())
    with pytest.raises(Killed):
      export_lib.export_encoder(encoder, export_dir, INPUT_SHAPE, {'step': 2})
  run = run_dir_lib.RunDir(model_dir)
  with caplog.at_level(logging.WARNING, logger='mi_tf.run_dir'):
    run.checkpoint_manager(tf.train.Checkpoint(v=tf.Variable(0.0)), max_to_keep=2)
  assert _step_of(export_dir) == 2
  assert _step_of(os.path.join(export_dir, 'step_1')) == 1
  assert _listing(model_dir) == ['export']
  [warning] = [r.getMessage() for r in caplog.records if r.name == 'mi_tf.run_dir']
  assert warning.startswith(f'Recovered an interrupted export in {model_dir}: put back ')


def test_a_step_export_killed_between_its_renames_is_recovered(old_run, encoder, tmp_path,
                                                               monkeypatch):
  model_dir = str(tmp_path / 'run')
  shutil.copytree(old_run, model_dir)
  step_dir = os.path.join(model_dir, 'export', 'step_1')
  with monkeypatch.context() as m:
    KillAt(m, 3, _export_targets())
    with pytest.raises(Killed):
      export_lib.export_encoder(encoder, step_dir, INPUT_SHAPE, {'step': 5})
  assert not os.path.exists(step_dir)
  assert run_dir_lib.RunDir(model_dir).recover()
  assert _step_of(step_dir) == 5
  assert _listing(os.path.join(model_dir, 'export')) == _listing(os.path.join(old_run,
                                                                              'export'))


def test_the_temporary_export_of_earlier_versions_is_put_back(old_run, tmp_path):
  # Earlier versions removed export/ and then renamed export.tmp (holding step_<k>/) to it.
  model_dir = str(tmp_path / 'run')
  shutil.copytree(old_run, model_dir)
  os.rename(os.path.join(model_dir, 'export'), os.path.join(model_dir, 'export.tmp'))
  assert run_dir_lib.RunDir(model_dir).recover()
  assert _step_of(os.path.join(model_dir, 'export')) == 1
  assert _step_of(os.path.join(model_dir, 'export', 'step_1')) == 1
  assert _listing(model_dir) == ['export']


def test_an_incomplete_leftover_is_removed_and_the_export_kept(old_run, tmp_path):
  model_dir = str(tmp_path / 'run')
  shutil.copytree(old_run, model_dir)
  half = os.path.join(model_dir, '.new-0123456789ab-export')
  os.makedirs(os.path.join(half, 'variables'))  # Killed while the SavedModel was written.
  assert run_dir_lib.RunDir(model_dir).recover() == [f'removed {half}']
  assert _step_of(os.path.join(model_dir, 'export')) == 1
  assert _listing(model_dir) == ['export']


# ------------------------------------------------------------------ strict JSON

def _strict(text):
  def refuse(constant):
    raise ValueError(f'not JSON: {constant}')
  return json.loads(text, parse_constant=refuse)


def test_json_files_are_strict_and_read_back(tmp_path):
  values = {'I_NWJ/test': float('nan'), 'big': float('inf'), 'small': -float('inf'),
            'numpy': np.float32('nan'), 'fine': 0.5, 'nested': {'list': [1, float('nan')]}}
  run = run_dir_lib.RunDir(str(tmp_path))
  run.write_final_metrics(values)
  text = (tmp_path / run_dir_lib.FINAL_METRICS_FILE).read_text()
  read = _strict(text)
  assert read == {'I_NWJ/test': 'nan', 'big': 'inf', 'small': '-inf', 'numpy': 'nan',
                  'fine': 0.5, 'nested': {'list': [1, 'nan']}}
  assert run.finished_metrics() == read
  assert math.isnan(float(read['I_NWJ/test'])) and float(read['small']) == -math.inf
  assert _listing(tmp_path) == [run_dir_lib.FINAL_METRICS_FILE]
  with pytest.raises(TypeError):
    jsonl.dumps_strict({'a': 1j})  # Not representable: one clear error, nothing written.
