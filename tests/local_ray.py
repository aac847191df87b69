"""A local Ray cluster of several nodes on this machine, for tests and benchmarks.

Call it only inside a network namespace that has only loopback (``unshare -n bash -c 'ip link
set lo up && ...'``): Ray registers its nodes under the machine's interface address
otherwise. Usage reporting is off. Every process is found by the cluster's own temp dir and
stopped by PID, never by name (``ray stop`` kills every Ray process of the machine).
"""

import os
import pathlib
import signal
import subprocess
import sys
import tempfile

PORT = 6380


def env():
  return dict(os.environ, RAY_USAGE_STATS_ENABLED='0',
              # A lost node is declared dead after 3 missed 1-s health checks (default 5 x 3 s).
              RAY_health_check_period_ms='1000', RAY_health_check_failure_threshold='3')


def start(num_nodes=2, cpus_per_node=1, port=PORT):
  """Starts a head and ``num_nodes - 1`` more nodes; returns (temp_dir, address)."""
  temp_dir = tempfile.mkdtemp(prefix='mtr', dir='/tmp')  # Short: Ray's socket paths.
  before = set(processes())
  ray = [os.path.join(os.path.dirname(sys.executable), 'ray'), 'start']
  subprocess.run(ray + ['--head', f'--port={port}', f'--num-cpus={cpus_per_node}',
                        '--include-dashboard=false', '--disable-usage-stats',
                        f'--temp-dir={temp_dir}'], env=env(), check=True, capture_output=True)
  for _ in range(num_nodes - 1):
    subprocess.run(ray + [f'--address=127.0.0.1:{port}', f'--num-cpus={cpus_per_node}',
                          '--disable-usage-stats'], env=env(), check=True, capture_output=True)
  # The Ray processes started just now, some of which (the client server) do not name the
  # temp dir: stop() kills them by these PIDs.
  started = [p for p, (_, cmd) in processes().items() if p not in before and 'ray' in cmd]
  with open(os.path.join(temp_dir, 'mi_tf_pids'), 'w') as f:
    f.write(' '.join(map(str, started)))
  return temp_dir, f'127.0.0.1:{port}'


def processes():
  """{pid: (ppid, cmdline)} of every process."""
  out = {}
  for proc in pathlib.Path('/proc').glob('[0-9]*'):
    try:
      cmd = (proc / 'cmdline').read_bytes().decode('utf-8', 'replace').replace('\0', ' ')
      ppid = int((proc / 'stat').read_text().rsplit(')', 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
      continue
    out[int(proc.name)] = (ppid, cmd)
  return out


def descendants(procs, root):
  children = {}
  for pid, (ppid, _) in procs.items():
    children.setdefault(ppid, []).append(pid)
  out, stack = [], [root]
  while stack:
    for c in children.get(stack.pop(), []):
      out.append(c)
      stack.append(c)
  return out


def raylets(procs, temp_dir):
  """{raylet pid: 'head' or 'second'} of this cluster ('second': any other node)."""
  return {pid: ('head' if ' --head' in cmd else 'second') for pid, (_, cmd) in procs.items()
          if '/raylet/raylet ' in cmd and temp_dir in cmd}


def node_of(procs, pid, nodes):
  """The node ('head'/'second') whose raylet is an ancestor of ``pid``, or None."""
  seen = set()
  while pid in procs and pid not in seen:
    if pid in nodes:
      return nodes[pid]
    seen.add(pid)
    pid = procs[pid][0]
  return None


def kill(pids):
  for pid in pids:
    try:
      os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
      pass


def kill_node(temp_dir, which='second'):
  """SIGKILLs a non-head node's raylet and everything under it (its workers and their
  children): a lost machine. Returns the number of processes killed."""
  procs = processes()
  nodes = [p for p, n in raylets(procs, temp_dir).items() if n == which]
  victims = [d for r in nodes for d in descendants(procs, r)] + nodes
  kill(victims)
  return len(victims)


def stop(temp_dir):
  """SIGKILLs every process of the cluster (found by its temp dir) and their children."""
  procs = processes()
  ours = [p for p, (_, c) in procs.items() if temp_dir in c]
  try:
    with open(os.path.join(temp_dir, 'mi_tf_pids')) as f:
      ours += [int(p) for p in f.read().split()
               if int(p) in procs and 'ray' in procs[int(p)][1]]  # Not a reused PID.
  except OSError:
    pass
  kill([d for p in ours for d in descendants(procs, p)] + ours)
