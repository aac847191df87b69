"""Bad input is refused before anything is written: a typo in any kind of gin reference leaves
a new model_dir uncreated and an existing run byte for byte as it was, so the corrected command
then runs (and is not refused as "a different gin config")."""

import hashlib
import os

import pytest

from conftest import GIN_DIR, TINY_BINDINGS
from mi_tf import launch

GIN = [str(GIN_DIR / 'sec3_2_critics_bilinear_infonce.gin')]

# (binding, what the one error message says): one of each kind of gin reference.
TYPOS = [
    ('train.num_stepz = 3', "'train' doesn't have a parameter named 'num_stepz'"),
    ('MIMaximization.learning_ratez = 1e-3', "doesn't have a parameter named 'learning_ratez'"),
    ('MLP.hidden_unitz = (10,)', 'Unrecognized keyword arguments passed to MLP'),
    ('Bilinear.units = 5', 'Unrecognized keyword arguments passed to Bilinear'),
    ("ImageHalves.train_split = 'train[:abc]'", r"Bad split 'train\[:abc\]' of 'mnist'"),
    ("ImageHalves.test_split = 'test[:99999]'", r"Bad split 'test\[:99999\]'.*10000 examples"),
    ("ImageHalves.probe_train_split = 'trian'", "has no split 'trian'"),
    ('linear_probe.Cz = 1.0', "'linear_probe' doesn't have a parameter named 'Cz'"),
    ('linear_probe.C = %PROBE_C', 'the macro %PROBE_C is used but never defined'),
    ('MIMaximization.critic = @Bilinaer', "No configurable matching reference '@Bilinaer'"),
    ('train.task = @Foo()', r"No configurable matching reference '@Foo\(\)'"),
]


def _train(model_dir, *bindings, num_steps=2):
  return launch.train_with_gin(model_dir, GIN, list(TINY_BINDINGS) + [
      f'train.num_steps = {num_steps}', *bindings])


def _snapshot(root):
  """{relative path: (size, mtime_ns, sha256)} of every file, and every directory."""
  out = {}
  for folder, dirs, names in os.walk(root):
    for name in dirs:
      out[os.path.relpath(os.path.join(folder, name), root)] = 'dir'
    for name in names:
      path = os.path.join(folder, name)
      with open(path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
      out[os.path.relpath(path, root)] = (os.path.getsize(path), os.stat(path).st_mtime_ns,
                                          digest)
  return out


def _refused(model_dir, binding, message, num_steps):
  with pytest.raises(ValueError, match=message) as error:
    _train(model_dir, binding, num_steps=num_steps)
  assert 'different gin config' not in str(error.value)


def test_typos_leave_the_model_dir_untouched_and_the_corrected_command_runs(tmp_path):
  model_dir = str(tmp_path / 'run')
  for binding, message in TYPOS:
    _refused(model_dir, binding, message, num_steps=2)
    assert not os.path.exists(model_dir), binding  # Not even created.
  assert _train(model_dir)['step'] == 2  # The corrected command.

  # An existing run, continued to more steps: still nothing written by a refused command.
  before = _snapshot(model_dir)
  assert 'config.gin' in before and 'checkpoints' in before
  for binding, message in TYPOS:
    _refused(model_dir, binding, message, num_steps=4)
    assert _snapshot(model_dir) == before, binding
  assert _train(model_dir, num_steps=4)['step'] == 4
