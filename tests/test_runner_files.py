"""The runner's files on a non-POSIX file system: TensorFlow's in-memory ``ram://``, through
``tf.io.gfile`` as for ``gs://`` (no flock, no O_EXCL, no append, no local paths)."""

import io
import json
import sys
import uuid

import tensorflow as tf

from conftest import REPO
from mi_tf import executor
from mi_tf import files
from mi_tf import leases
from mi_tf import runs as runs_lib
from mi_tf import study


def _ram_dir():
  return f'ram://runs-{uuid.uuid4().hex[:8]}'


def test_files_primitives_on_ram():
  root = _ram_dir()
  files.makedirs(root)
  path = files.join(root, 'a.json')
  assert files.create_exclusive(path, '{"x": 1}')
  assert not files.create_exclusive(path, '{"x": 2}')  # Exists: not replaced.
  assert json.loads(files.read_text(path)) == {'x': 1}
  files.write_atomic(path, '{"x": 3}')
  assert json.loads(files.read_text(path)) == {'x': 3}
  assert files.glob(files.join(root, '*.json')) == [path]
  assert tf.io.gfile.listdir(root) == ['a.json']  # No temporary file left.
  assert files.rename_no_overwrite(path, files.join(root, 'b.json'))
  assert not files.rename_no_overwrite(path, files.join(root, 'c.json'))  # Already moved.
  files.remove(files.join(root, 'b.json'))
  files.remove(files.join(root, 'b.json'))  # Gone already: no error.
  assert not files.exists(files.join(root, 'b.json'))
  assert files.abspath(root + '/') == root


def test_leases_on_ram_one_holder_at_a_time_and_stale_ones_broken():
  model_dir = files.join(_ram_dir(), 'setting', 'seed0')
  a, b = leases.Holder(owner='a'), leases.Holder(owner='b')
  assert a.acquire(model_dir)
  assert not b.acquire(model_dir)
  a.renew()
  assert leases.read(model_dir)['owner'] == 'a'
  a._stop.set()  # pylint: disable=protected-access
  # Not renewed for longer than its ttl: stale, b takes it over.
  record = leases.read(model_dir)
  record['renewed'] -= leases.DEFAULT_TTL + 1
  files.write_atomic(files.join(model_dir, leases.LEASE_FILE), json.dumps(record))
  assert leases.is_stale(leases.read(model_dir))
  assert b.acquire(model_dir)
  assert leases.read(model_dir)['owner'] == 'b'
  a.release(model_dir)  # Not a's any more: left alone.
  assert leases.read(model_dir)['owner'] == 'b'
  b.close()
  assert leases.read(model_dir) is None


def test_the_runner_on_a_ram_runs_dir(tmp_path):
  """Plan, state, a failed attempt (its log, attempt and failure records written through
  gfile), then a finished run skipped: the whole runner on ram://."""
  runs_dir = _ram_dir()
  run = runs_lib.plan(study.suite_settings([], ['sec4_iid']), 1, runs_dir)[0]
  assert run.model_dir == f'{runs_dir}/sec4_iid/seed0'
  assert runs_lib.state(run) == 'new'
  child = tmp_path / 'fake_python'
  child.write_text('#!/bin/bash\necho "ERROR: bad input"\nexit 3\n')
  child.chmod(0o755)
  out = io.StringIO()
  summary = executor.run_all([run], runs_dir, REPO, python=str(child), out=out)
  assert summary['failed'] == [run.key], out.getvalue()
  log = files.read_text(files.join(run.model_dir, runs_lib.RUNNER_LOG))
  assert log.startswith('==== ') and 'ERROR: bad input' in log
  failure = runs_lib.read_failures(runs_dir)[run.key]
  assert failure['returncode'] == 3 and failure['error'] == 'ERROR: bad input'
  assert [h['returncode'] for h in runs_lib.read_history(runs_dir)] == [3]
  assert leases.read(run.model_dir) is None
  assert runs_lib.status_table([run], runs_dir)[0][1] == 'failed'
  # Finished meanwhile (its final metrics written), checkpoint files found through gfile.
  files.makedirs(files.join(run.model_dir, 'checkpoints'))
  files.write_atomic(files.join(run.model_dir, 'checkpoints', 'ckpt-7.index'), '')
  assert runs_lib.checkpoint_step(run.model_dir) == 7
  files.write_atomic(files.join(run.model_dir, runs_lib.FINAL_METRICS), '{"step": 4}')
  out = io.StringIO()
  summary = executor.run_all([run], runs_dir, REPO, python=sys.executable, out=out)
  assert summary['skipped'] == [run.key]
