"""One writer per run directory: a second process on a model_dir that a live process trains is
refused at once (naming that process and its host); a lease its owner left behind (the process
is gone, or it was not renewed for the ttl) is broken with a warning; only the chief of a
multi-worker run takes it; a finished run's rerun takes none."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import GIN_DIR, TINY_BINDINGS, metrics_without_timing, dir_snapshot
from mi_tf import launch
from mi_tf import leases
from mi_tf import metrics_log
from mi_tf import run_dir as run_dir_lib
from mi_tf.scripts import train as train_script

GIN = str(GIN_DIR / 'sec4_iid.gin')
LEASE = run_dir_lib.TRAIN_LEASE_FILE
CONFIG = 'train.seed = 0\n'


def _lease_path(model_dir):
  return os.path.join(model_dir, LEASE)


def _write_lease(model_dir, pid, host, renewed):
  os.makedirs(model_dir, exist_ok=True)
  with open(_lease_path(model_dir), 'w') as f:
    json.dump({'owner': f'train:{host}:{pid}:test', 'host': host, 'pid': pid,
               'acquired': renewed, 'renewed': renewed, 'ttl': leases.DEFAULT_TTL}, f)


_snapshot = dir_snapshot


def _train(model_dir, num_steps=4):
  return launch.train_with_gin(model_dir, [GIN], list(TINY_BINDINGS) + [
      f'train.num_steps = {num_steps}'])


def _dead_pid():
  proc = subprocess.Popen([sys.executable, '-c', 'pass'])
  proc.wait()
  return proc.pid


@pytest.mark.e2e  # Several processes: the e2e tier (pytest.ini).
def test_a_second_process_on_a_model_dir_in_training_is_refused_at_once(tmp_path, caplog):
  """The owner: a real training process; the second: mi-tf-train's main() in this process."""
  model_dir = str(tmp_path / 'run')
  argv = ['mi-tf-train', f'--gin_file={GIN}', f'--model_dir={model_dir}'] + [
      f'--gin_bindings={b}' for b in TINY_BINDINGS] + [
          '--gin_bindings=train.num_steps = 1000000', '--gin_bindings=train.log_every = 20',
          '--gin_bindings=train.eval_every = 100000',
          '--gin_bindings=train.checkpoint_every = 100000']
  owner = subprocess.Popen([sys.executable, '-m', 'mi_tf.scripts.train'] + argv[1:],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           cwd=str(tmp_path))

  def wait_for_train_records(count):
    deadline = time.time() + 300
    while len([r for r in metrics_log.read(model_dir) if r['split'] == 'train']) < count:
      assert owner.poll() is None, owner.communicate()[1][-3000:]
      assert time.time() < deadline
      time.sleep(0.1)

  try:
    wait_for_train_records(1)
    caplog.clear()
    with caplog.at_level(logging.INFO):
      assert train_script.main(argv) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith('RunInUseError: '), errors
    assert f'process {owner.pid} on host {socket.gethostname()}' in errors[0]
    assert not any('Resumed' in r.getMessage() for r in caplog.records)
    wait_for_train_records(3)  # Still training, undisturbed.
    owner.send_signal(signal.SIGTERM)  # Stops at a checkpoint and releases its lease.
    assert owner.wait(timeout=120) == 128 + signal.SIGTERM, owner.communicate()[1][-3000:]
  finally:
    if owner.poll() is None:
      owner.kill()
      owner.wait()
  assert not os.path.exists(_lease_path(model_dir))
  train_steps = sorted({step for step, split, _ in metrics_without_timing(model_dir)
                        if split == 'train'})  # metrics_without_timing fails on duplicates.
  assert train_steps == list(range(20, train_steps[-1] + 1, 20)), train_steps  # None missing.


def test_a_live_lease_refuses_a_stale_one_is_broken_a_finished_rerun_takes_none(
    tmp_path, caplog):
  model_dir = str(tmp_path / 'run')
  _write_lease(model_dir, 4242, 'elsewhere', time.time())
  before = _snapshot(model_dir)
  with pytest.raises(run_dir_lib.RunInUseError, match='process 4242 on host elsewhere'):
    _train(model_dir)
  assert _snapshot(model_dir) == before
  # Not renewed for longer than the ttl (its host is down): broken with a warning.
  _write_lease(model_dir, 4242, 'elsewhere', time.time() - leases.DEFAULT_TTL - 1)
  with caplog.at_level(logging.WARNING, logger='mi_tf'):
    assert _train(model_dir)['step'] == 4
  assert any('Broke the stale lease' in r.getMessage() and '4242' in r.getMessage()
             for r in caplog.records)
  assert not os.path.exists(_lease_path(model_dir))  # Released at the end.
  # A finished run's rerun neither waits for nor takes the lease, and writes nothing.
  _write_lease(model_dir, 4242, 'elsewhere', time.time())
  before = _snapshot(model_dir)
  assert _train(model_dir)['step'] == 4
  assert _snapshot(model_dir) == before


def test_the_lease_of_a_dead_process_on_this_host_is_broken_at_once(tmp_path, caplog):
  model_dir = str(tmp_path / 'run')
  dead = _dead_pid()
  _write_lease(model_dir, dead, socket.gethostname(), time.time())
  run = run_dir_lib.RunDir(model_dir)
  with caplog.at_level(logging.WARNING, logger='mi_tf'):
    assert run.start(CONFIG, 4) == 'new'
  assert any(f'process {dead} on host' in r.getMessage() for r in caplog.records)
  assert leases.read(model_dir, LEASE)['pid'] == os.getpid()
  # This process is alive: another writer (here in the same process) is refused.
  with pytest.raises(run_dir_lib.RunInUseError, match=f'process {os.getpid()} on host'):
    run_dir_lib.RunDir(model_dir).start(CONFIG, 4)
  run.close()
  assert not os.path.exists(_lease_path(model_dir))
  assert leases.read(model_dir) is None  # The runner's lease is another file.


def test_only_the_chief_takes_the_lease(tmp_path):
  model_dir = str(tmp_path / 'run')
  worker = run_dir_lib.RunDir(model_dir, chief=False, worker_dir=str(tmp_path / 'scratch'),
                              task_info=('worker', 1))
  assert worker.start(CONFIG, 4) == 'new'
  assert os.path.isdir(tmp_path / 'scratch' / 'worker_1')
  assert not os.path.exists(model_dir)
  worker.close()
