"""Preemption-safe training: a run killed (SIGKILL) or stopped (SIGTERM) mid-way and rerun with
the same command ends with the same weights and metrics as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import GIN_DIR, REPO, TINY_BINDINGS, checkpoint_weights, metrics_without_timing
from mi_tf import metrics_log

# End to end (several processes): in the e2e tier, `pytest -m e2e` (pytest.ini).
pytestmark = pytest.mark.e2e

GIN = str(GIN_DIR / 'sec3_2_critics_bilinear_nwj.gin')
STEPS = 200
BINDINGS = list(TINY_BINDINGS) + [
    f'train.num_steps = {STEPS}', 'train.eval_every = 100', 'train.log_every = 2',
    'train.checkpoint_every = 10', 'train.deterministic = True']


def _cmd(model_dir):
  return [sys.executable, str(REPO / 'train.py'), f'--gin_file={GIN}',
          f'--model_dir={model_dir}'] + [f'--gin_bindings={b}' for b in BINDINGS]


def _run(model_dir):
  proc = subprocess.run(_cmd(model_dir), capture_output=True, text=True, timeout=600,
                        cwd=str(REPO))
  assert proc.returncode == 0, proc.stderr[-3000:]


def _interrupt(model_dir, sig):
  """Starts the run, sends ``sig`` once a mid-run checkpoint exists; returns the exit code."""
  proc = subprocess.Popen(_cmd(model_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, cwd=str(REPO))
  deadline = time.time() + 300
  while not tf.io.gfile.glob(os.path.join(model_dir, 'checkpoints', 'ckpt-30.index')):
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.time() < deadline
    time.sleep(0.02)
  proc.send_signal(sig)
  proc.communicate(timeout=300)
  assert not os.path.exists(os.path.join(model_dir, 'final_metrics.json')), (
      'the run finished before it was interrupted')
  return proc.returncode


_weights = checkpoint_weights
_metrics = metrics_without_timing


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp('reference') / 'run')
  _run(model_dir)
  return _weights(model_dir), _metrics(model_dir)


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM], ids=['SIGKILL', 'SIGTERM'])
def test_interrupted_run_resumes_to_the_same_result(reference, sig, tmp_path):
  model_dir = str(tmp_path / 'run')
  code = _interrupt(model_dir, sig)
  if sig == signal.SIGTERM:
    assert code == 128 + signal.SIGTERM  # Handled: checkpoint written, clean exit.
    steps = json.loads(open(os.path.join(model_dir, 'run_info.json')).read())['sessions']
    assert len(steps) == 1
  else:
    assert code == -signal.SIGKILL
  _run(model_dir)
  sessions = json.loads(open(os.path.join(model_dir, 'run_info.json')).read())['sessions']
  assert len(sessions) == 2 and sessions[1]['start_step'] >= 30

  ref_weights, ref_metrics = reference
  weights = _weights(model_dir)
  assert int(weights['step/.ATTRIBUTES/VARIABLE_VALUE']) == STEPS
  assert set(weights) == set(ref_weights)
  for name, value in ref_weights.items():
    np.testing.assert_array_equal(weights[name], value, err_msg=name)
  metrics = _metrics(model_dir)
  assert set(metrics) == set(ref_metrics)
  assert len({k[0] for k in metrics if k[1] == 'train'}) == STEPS // 2
  for key, value in ref_metrics.items():
    assert metrics[key] == value, key

  # The run's wall time adds the sessions up: the resumed session's own time is only a part,
  # and the per-record total never goes back at the resume.
  final = json.loads(open(os.path.join(model_dir, 'final_metrics.json')).read())
  assert final['wall_seconds'] > final['wall_seconds_this_session'] > 0
  walls = sorted((r['step'], r['value']) for r in metrics_log.read(model_dir)
                 if r['metric'] == 'wall_seconds')
  assert [s for s, _ in walls] == list(range(2, STEPS + 1, 2))
  assert all(b[1] >= a[1] for a, b in zip(walls, walls[1:])), walls
  assert final['wall_seconds'] >= walls[-1][1]


def test_uninterrupted_run_wall_seconds_is_its_session(tmp_path):
  """A run in one session: the total wall time is that session's."""
  model_dir = str(tmp_path / 'run')
  _run(model_dir)
  final = json.loads(open(os.path.join(model_dir, 'final_metrics.json')).read())
  assert final['wall_seconds'] == final['wall_seconds_this_session'] > 0
