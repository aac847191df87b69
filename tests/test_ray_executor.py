"""The Ray executor on a two-node Ray cluster on this machine, one node lost mid-run.

The cluster runs inside a network namespace with only loopback (``unshare -n``, as root):
Ray registers nodes under the machine's interface address otherwise. Ray's usage reporting is
off (RAY_USAGE_STATS_ENABLED=0). tests/ray_cluster_check.py starts the nodes, runs the sweep,
kills the second node's processes while a run trains there, and stops every process it
started by PID.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from mi_tf import metrics_log
from mi_tf import runs as runs_lib
from mi_tf import study

# End to end (several processes): in the e2e tier, `pytest -m e2e` (pytest.ini).
pytestmark = pytest.mark.e2e


def test_a_sweep_on_two_ray_nodes_survives_the_loss_of_one(tmp_path):
  runs_dir = tmp_path / 'runs'
  runs_dir.mkdir()
  env = dict(os.environ, RAY_USAGE_STATS_ENABLED='0')
  script = (f'ip link set lo up && exec {sys.executable} '
            f'{REPO / "tests" / "ray_cluster_check.py"} --runs_dir={runs_dir}')
  proc = subprocess.run(['unshare', '-n', 'bash', '-c', script], env=env, cwd=str(REPO),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  facts = json.loads(proc.stdout.strip().splitlines()[-1])
  log = facts['driver_log']
  assert facts['driver_returncode'] == 0, log
  # The runs went to both nodes, and one was killed on the second node after a checkpoint.
  nodes = {n for seen in facts['nodes_seen'].values() for n in seen}
  assert nodes == {'head', 'second'}, facts['nodes_seen']
  killed = facts['killed']
  assert killed is not None, log
  assert '4 completed, 0 already finished, 0 failed, 0 busy' in log
  runs = runs_lib.plan(study.suite_settings([], ['sec4_noniid']), 4, runs_dir)
  for run in runs:
    assert runs_lib.state(run) == 'finished', run.key
    records = metrics_log.read(run.model_dir)
    keys = [(r['split'], r['metric'], r['step']) for r in records]
    assert len(keys) == len(set(keys)), f'{run.key}: duplicated metrics lines'
    evals = sorted(r['step'] for r in records if r['metric'] == 'I_EST/eval')
    assert evals == [0, 1000, 2000, 3000], run.key
    info = json.loads(open(os.path.join(run.model_dir, 'run_info.json')).read())
    starts = [s['start_step'] for s in info['sessions']]
    if run.key == killed['run']:
      # Retried on the surviving node: resumed from its checkpoint, not from step 0.
      assert len(starts) == 2 and starts[1] >= 300, starts
      assert 'head' in facts['nodes_seen'][run.key]
    else:
      assert starts == [0], (run.key, starts)
    assert not runs_lib.read_failures(str(runs_dir), [run])
