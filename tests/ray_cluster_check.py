"""A two-node Ray cluster on this machine, a sweep on it, and one node killed mid-run.

Run by tests/test_ray_executor.py inside a network namespace that has only loopback
(``unshare -n``): Ray registers its nodes under the machine's interface address otherwise,
and its traffic would leave loopback. Prints one JSON object (the facts the test asserts).

  unshare -n bash -c 'ip link set lo up && python tests/ray_cluster_check.py --runs_dir=DIR'

Steps: a head node and a second node (``ray start``, one CPU each, in a fresh temp dir);
``python -m mi_tf.reproduce run --executor=ray`` on four tiny Sec. 4 runs; when a run on the
second node has written a checkpoint, every process of that node is killed with SIGKILL (a
lost machine); the driver runs to its end; then every process this script started is
stopped by PID.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))

import local_ray  # noqa: E402  pylint: disable=g-import-not-at-top
from conftest import TINY_BINDINGS  # noqa: E402  pylint: disable=g-import-not-at-top
from mi_tf import runs as runs_lib  # noqa: E402  pylint: disable=g-import-not-at-top
from mi_tf import study  # noqa: E402  pylint: disable=g-import-not-at-top

BINDINGS = [b for b in TINY_BINDINGS if not b.startswith(('train.num_steps', 'train.eval_every',
                                                          'train.log_every',
                                                          'train.checkpoint_every'))] + [
    'train.num_steps = 3000', 'train.eval_every = 1000', 'train.log_every = 100',
    'train.checkpoint_every = 100']


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--runs_dir', required=True)
  parser.add_argument('--timeout', type=float, default=420)
  args = parser.parse_args()
  facts = {'nodes_seen': {}, 'killed': None}
  driver = None
  temp_dir = None
  try:
    temp_dir, address = local_ray.start(num_nodes=2, cpus_per_node=1)
    settings = study.suite_settings([], ['sec4_noniid'])
    runs = runs_lib.plan(settings, 4, args.runs_dir)
    log = open(os.path.join(args.runs_dir, 'driver.log'), 'w')
    driver = subprocess.Popen(
        [sys.executable, '-m', 'mi_tf.reproduce', 'run', '--settings=sec4_noniid', '--seeds=4',
         f'--runs_dir={args.runs_dir}', '--executor=ray', f'--ray_address={address}']
        + [f'--gin_bindings={b}' for b in BINDINGS], cwd=str(REPO), env=local_ray.env(),
        stdout=log,
        stderr=subprocess.STDOUT)
    deadline = time.time() + args.timeout
    while driver.poll() is None and time.time() < deadline:
      procs = local_ray.processes()
      nodes = local_ray.raylets(procs, temp_dir)
      for pid, (_, cmd) in procs.items():
        if runs_lib.TRAIN_MODULE not in cmd or args.runs_dir not in cmd:
          continue
        run = next((r for r in runs if f'--model_dir={r.model_dir} ' in cmd + ' '), None)
        node = local_ray.node_of(procs, pid, nodes)
        if run is None or node is None:
          continue
        facts['nodes_seen'].setdefault(run.key, [])
        if node not in facts['nodes_seen'][run.key]:
          facts['nodes_seen'][run.key].append(node)
        step = runs_lib.checkpoint_step(run.model_dir)
        if (facts['killed'] is None and node == 'second' and step is not None and step >= 300
            and runs_lib.state(run) != 'finished'):
          victims = local_ray.kill_node(temp_dir)
          facts['killed'] = {'run': run.key, 'checkpoint_step': step,
                             'processes': victims}
      time.sleep(0.2)
    if driver.poll() is None:
      driver.terminate()
      driver.wait(timeout=60)
      facts['driver_timed_out'] = True
    facts['driver_returncode'] = driver.returncode
    log.close()
    facts['driver_log'] = open(os.path.join(args.runs_dir, 'driver.log')).read()[-6000:]
  finally:
    if driver is not None and driver.poll() is None:
      driver.kill()
    if temp_dir is not None:
      local_ray.stop(temp_dir)
  print(json.dumps(facts))


if __name__ == '__main__':
  main()
