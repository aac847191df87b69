"""Multi-replica training computes the same estimator as one device (Sec. 2 estimators over the
GLOBAL batch), with MirroredStrategy on 2 logical CPUs and MultiWorkerMirroredStrategy with 2
local worker processes (TF_CONFIG)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import GIN_DIR, REPO, TINY_BINDINGS

# End to end (several processes): in the e2e tier, `pytest -m e2e` (pytest.ini).
pytestmark = pytest.mark.e2e

GIN = str(GIN_DIR / 'sec3_2_critics_concat_nwj.gin')


def _run_check(*args):
  proc = subprocess.run([sys.executable, str(REPO / 'tests' / 'distributed_check.py'), *args],
                        capture_output=True, text=True, timeout=600, cwd=str(REPO))
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_replicas_equal_one_device(tmp_path):
  out = _run_check('equivalence', str(tmp_path / 'indivisible'))
  assert out['replicas'] == 2
  for key in ('infonce_Bilinear', 'infonce_Concat', 'nwj_Bilinear', 'nwj_Concat'):
    r = out[key]
    assert r['loss_two'] == pytest.approx(r['loss_one'], abs=1e-5), key
    assert r['max_grad_diff'] <= 1e-5, key
    assert r['max_grad'] > 1e-3, key  # The comparison is not between zeros.
  assert 'not divisible by the 2 replicas' in out['indivisible_error']
  assert not out['indivisible_dir_exists']


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(('localhost', 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _train_cmd(model_dir, extra=()):
  bindings = list(TINY_BINDINGS) + ['train.num_steps = 6', 'train.batch_size = 32', *extra]
  return [sys.executable, str(REPO / 'train.py'), f'--gin_file={GIN}',
          f'--model_dir={model_dir}'] + [f'--gin_bindings={b}' for b in bindings]


def _weights(checkpoint_dir):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(checkpoint_dir)))
  names = [n for n in reader.get_variable_to_shape_map()
           if n.startswith(('g1/', 'g2/', 'critic/')) and 'OPTIMIZER_SLOT' not in n]
  return {n: reader.get_tensor(n) for n in names}


def test_two_worker_processes_match_the_single_process_run(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  reference = tmp_path / 'reference'
  proc = subprocess.run(_train_cmd(reference), capture_output=True, text=True, timeout=600,
                        env=env, cwd=str(REPO))
  assert proc.returncode == 0, proc.stderr[-3000:]

  ports = _free_ports(2)
  cluster = {'worker': [f'localhost:{p}' for p in ports]}
  model_dir, scratch = tmp_path / 'multi', tmp_path / 'scratch'
  workers = []
  for index in range(2):
    worker_env = dict(env, TF_CONFIG=json.dumps({'cluster': cluster,
                                                 'task': {'type': 'worker', 'index': index}}))
    cmd = _train_cmd(model_dir, [f"train.worker_dir = '{scratch}'"]) + [
        '--distribution=multi_worker']
    workers.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, env=worker_env, cwd=str(REPO)))
  for w in workers:
    _, err = w.communicate(timeout=600)
    assert w.returncode == 0, err[-3000:]

  ref = _weights(reference / 'checkpoints')
  chief = _weights(model_dir / 'checkpoints')
  other = _weights(scratch / 'worker_1' / 'checkpoints')
  assert ref and set(ref) == set(chief) == set(other)
  for name in ref:
    np.testing.assert_array_equal(chief[name], other[name])  # Replicas stay in sync.
    np.testing.assert_allclose(chief[name], ref[name], atol=1e-5, err_msg=name)
  # Only the chief wrote the run directory's files.
  assert (model_dir / 'export' / 'saved_model.pb').exists()
  assert not (scratch / 'worker_1' / 'export').exists()
  info = json.loads((model_dir / 'run_info.json').read_text())
  assert info['sessions'][-1]['strategy'] in ('MultiWorkerMirroredStrategy',
                                              'CollectiveAllReduceStrategy')  # TF's alias.
  assert info['sessions'][-1]['num_replicas'] == 2
