"""No hang without a message, no signal ignored: a multi-worker run whose peer never comes up
says which address it waits for and gives up (--cluster_timeout) or stops on SIGTERM; a
blocking setup is abandoned on time or on a signal; Ctrl-C during training checkpoints like
SIGTERM (exit status 130) and the rerun finishes. Loopback only."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf

from conftest import TINY_BINDINGS
from mi_tf import distribute
from mi_tf.scripts import train

# End to end (several processes): in the e2e tier, `pytest -m e2e` (pytest.ini).
pytestmark = pytest.mark.e2e

TOY = [f'--gin_bindings={b}' for b in TINY_BINDINGS]


def _closed_port():
  """A loopback port nobody listens on (bound, then released)."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _tf_config(index=0):
  ports = [_closed_port(), _closed_port()]
  cluster = {'worker': [f'127.0.0.1:{p}' for p in ports]}
  return json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': index}}), ports


def _error_lines(text):
  return [line for line in text.splitlines() if ' ERROR ' in line or line.startswith('ERROR')]


def test_a_peer_that_never_comes_up_fails_within_the_timeout_in_one_line(
    tmp_path, monkeypatch, capsys, caplog):
  tf_config, ports = _tf_config()
  monkeypatch.setenv('TF_CONFIG', tf_config)
  model_dir = tmp_path / 'run'
  start = time.monotonic()
  with caplog.at_level(logging.INFO, logger='mi_tf'):
    status = train.main(['mi-tf-train', '--gin_file=sec4_iid.gin', f'--model_dir={model_dir}',
                         '--distribution=multi_worker', '--cluster_timeout=5', *TOY])
  elapsed = time.monotonic() - start
  assert status == 1
  assert 5 <= elapsed < 60, elapsed  # Gave up on time (the bound leaves room for load).
  # It said what it waits for, then one error naming the peer (pytest's log capture holds
  # the records; stderr has no traceback).
  infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
  assert any(f'waiting up to 5 s for worker 1 at 127.0.0.1:{ports[1]}' in m for m in infos)
  errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
  assert len(errors) == 1, errors
  assert errors[0].startswith('ClusterError: Gave up after 5 s: no answer from worker 1 at '
                              f'127.0.0.1:{ports[1]}'), errors[0]
  assert '--verbose' in errors[0]
  assert 'Traceback' not in capsys.readouterr().err
  assert not model_dir.exists()
  # The placeholder that made this worker visible to its peers is closed again.
  with socket.socket() as s:
    s.bind(('', ports[0]))


def test_sigterm_while_waiting_for_a_peer_stops_promptly_with_a_message(tmp_path):
  tf_config, ports = _tf_config()
  env = dict(os.environ, TF_CONFIG=tf_config)
  proc = subprocess.Popen(
      [sys.executable, '-m', 'mi_tf.scripts.train', '--gin_file=sec4_iid.gin',
       f'--model_dir={tmp_path / "run"}', '--distribution=multi_worker', *TOY],
      stderr=subprocess.PIPE, text=True, env=env, cwd=str(tmp_path))
  lines = []
  for line in proc.stderr:  # Up to the line that says what it waits for.
    lines.append(line)
    if 'waiting up to' in line:
      break
  assert f'worker 1 at 127.0.0.1:{ports[1]}' in lines[-1], lines
  time.sleep(2)
  sent = time.monotonic()
  proc.send_signal(signal.SIGTERM)
  rest = proc.communicate(timeout=60)[1]
  assert time.monotonic() - sent < 10
  assert proc.returncode == 128 + signal.SIGTERM
  assert 'Received SIGTERM while waiting for worker 1' in rest, rest
  assert 'Traceback' not in rest and not (tmp_path / 'run').exists()


def test_a_blocking_setup_is_abandoned_on_time_and_on_a_signal(monkeypatch, caplog):
  """``run_abandonable`` ends the process (os._exit) from a watcher thread; here os._exit
  only records its status and lets the blocked call go."""
  released, statuses = threading.Event(), []

  def fake_exit(status):
    statuses.append(status)
    released.set()

  monkeypatch.setattr(distribute.os, '_exit', fake_exit)
  start = time.monotonic()
  with caplog.at_level(logging.INFO, logger='mi_tf'):
    distribute.run_abandonable(lambda: released.wait(60), 1.0, 'a blocked test call')
  assert statuses == [1] and time.monotonic() - start < 30
  assert 'did not finish' in caplog.records[-1].getMessage()

  released.clear()
  threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
  try:
    distribute.run_abandonable(lambda: released.wait(60), 60.0, 'a blocked test call')
    raised = None
  except SystemExit as e:  # The handler saw the signal too: it is not lost either.
    raised = e.code
  assert statuses == [1, 128 + signal.SIGTERM] and raised == 128 + signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # Handlers restored.


def test_sigint_checkpoints_exits_130_and_the_rerun_finishes(tmp_path):
  model_dir = tmp_path / 'run'
  steps = 300
  argv = ['--gin_file=sec4_iid.gin', f'--model_dir={model_dir}', *TOY,
          f'--gin_bindings=train.num_steps = {steps}', '--gin_bindings=train.eval_every = 300',
          '--gin_bindings=train.log_every = 10', '--gin_bindings=train.checkpoint_every = 10']
  proc = subprocess.Popen([sys.executable, '-m', 'mi_tf.scripts.train', *argv],
                          stderr=subprocess.PIPE, text=True, cwd=str(tmp_path))
  deadline = time.time() + 300
  while not (model_dir / 'checkpoints' / 'ckpt-10.index').exists():
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    assert time.time() < deadline
    time.sleep(0.02)
  proc.send_signal(signal.SIGINT)
  err = proc.communicate(timeout=300)[1]
  assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
  assert not (model_dir / 'final_metrics.json').exists(), 'it finished before the signal'
  stopped = [line for line in err.splitlines() if 'Received SIGINT: saved a checkpoint' in line]
  assert len(stopped) == 1 and 'Traceback' not in err, err[-3000:]
  step = int(stopped[0].split('at step ')[1].split()[0])
  assert 10 <= step < steps
  assert tf.train.latest_checkpoint(str(model_dir / 'checkpoints')).endswith(f'ckpt-{step}')

  assert train.main(['mi-tf-train', *argv]) == 0  # The rerun resumes there and finishes.
  final = json.loads((model_dir / 'final_metrics.json').read_text())
  assert final['step'] == steps and final['status'] == 'ok'
  sessions = json.loads((model_dir / 'run_info.json').read_text())['sessions']
  assert [s['start_step'] for s in sessions] == [0, step]
