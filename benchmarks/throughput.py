#!/usr/bin/env python
"""Runs per hour of the study's runner: the same runs sequentially, two at a time, and on Ray.

  python benchmarks/throughput.py --settings=sec4_noniid,sec3_2_critics_separable_infonce \
      --seeds=1 --output=benchmarks/throughput.json

Prints a table (and writes JSON); NOT a timed test. Each mode runs the same full-length runs
(the settings' own gin files, seeds 0 .. N-1) from scratch in its own runs_dir under
--work_dir, through ``python -m mi_tf.reproduce run``:

  sequential  --jobs 1 (each run with every core)
  jobs2       --jobs 2 (the default on a 2-core machine for these 1-core settings)
  ray2        --executor=ray on a local two-node Ray cluster, one CPU per node
  ray1        --executor=ray on a one-node Ray cluster with one CPU: one node's own
              throughput, the reference of the cluster's (target: ray2 >= 0.9 x 2 x ray1)

Ray needs a network namespace that has only loopback (it would use the machine's interface
address otherwise): with a Ray mode requested, the script re-runs itself under
``unshare -n`` (root). The load average and other trainings running on the machine are
printed before and after: the numbers mean something only on an otherwise idle machine.
"""

import argparse
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))

from mi_tf import jsonl  # noqa: E402

MODES = ('sequential', 'jobs2', 'ray2', 'ray1')


def _isolated():
  """True inside a network namespace that has only loopback (``ip`` asks the kernel for this
  process's namespace; /sys/class/net would show the host's while sysfs is not remounted)."""
  out = subprocess.run(['ip', '-o', 'link', 'show'], capture_output=True, text=True,
                       check=False).stdout
  names = [line.split(':')[1].strip() for line in out.splitlines() if ':' in line]
  return names == ['lo']


def _load():
  others = []
  for proc in pathlib.Path('/proc').glob('[0-9]*'):
    try:
      cmd = (proc / 'cmdline').read_bytes().decode('utf-8', 'replace').split('\0')
    except OSError:
      continue
    if (any(a.endswith(('train.py', 'eval_probe.py')) for a in cmd[:2])
        or any(a in ('mi_tf.scripts.train', 'mi_tf.scripts.probe') for a in cmd[:3])):
      others.append(int(proc.name))
  return {'loadavg': os.getloadavg(), 'trainings_running': len(others)}


def _run_mode(mode, settings, seeds, runs_dir, bindings):
  from mi_tf import runs as runs_lib  # pylint: disable=g-import-not-at-top
  cmd = [sys.executable, '-m', 'mi_tf.reproduce', 'run', f'--settings={settings}',
         f'--seeds={seeds}', f'--runs_dir={runs_dir}']
  cmd += [f'--gin_bindings={b}' for b in bindings]
  temp_dir = None
  env = dict(os.environ)
  if mode == 'sequential':
    cmd.append('--jobs=1')
  elif mode == 'jobs2':
    cmd.append('--jobs=2')
  else:
    import local_ray  # pylint: disable=g-import-not-at-top
    temp_dir, address = local_ray.start(num_nodes=2 if mode == 'ray2' else 1, cpus_per_node=1)
    cmd += ['--executor=ray', f'--ray_address={address}']
    env = local_ray.env()
  try:
    start = time.time()
    proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True)
    wall = time.time() - start
  finally:
    if temp_dir is not None:
      local_ray.stop(temp_dir)
  history = runs_lib.read_history(runs_dir)
  done = [h for h in history if h.get('returncode') == 0]
  return {'mode': mode, 'command': ' '.join(cmd[1:]), 'returncode': proc.returncode,
          'runs': len(done), 'wall_seconds': wall,
          'runs_per_hour': len(done) / wall * 3600 if wall else None,
          'run_seconds': {h['key']: h['seconds'] for h in done},
          'output_tail': proc.stdout[-2000:] + proc.stderr[-2000:]}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--settings', default='sec4_noniid,sec3_2_critics_separable_infonce')
  parser.add_argument('--seeds', type=int, default=1)
  parser.add_argument('--modes', default=','.join(MODES))
  parser.add_argument('--work_dir', default='/tmp/mi_tf_throughput')
  parser.add_argument('--gin_bindings', action='append', default=[],
                      help='for a quick check only (e.g. train.num_steps = 200).')
  parser.add_argument('--output', default=None)
  args = parser.parse_args(argv)
  modes = [m for m in args.modes.split(',') if m]
  if any(m.startswith('ray') for m in modes) and not _isolated():
    if os.environ.get('MI_TF_IN_NETNS'):  # Re-run once only.
      raise SystemExit('unshare -n did not give a loopback-only network namespace')
    script = ' '.join(['ip link set lo up && MI_TF_IN_NETNS=1 exec', sys.executable,
                       os.path.abspath(__file__)]
                      + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)])
    return subprocess.call(['unshare', '-n', 'bash', '-c', script])
  machine = {'platform': platform.platform(), 'processor': platform.processor(),
             'cpus': os.cpu_count()}
  results = {'machine': machine, 'settings': args.settings, 'seeds': args.seeds,
             'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
             'load_at_start': _load(), 'modes': []}
  print(f'{results["date"]}; load at start: {results["load_at_start"]}', flush=True)
  for mode in modes:
    runs_dir = os.path.join(args.work_dir, mode)
    shutil.rmtree(runs_dir, ignore_errors=True)
    os.makedirs(runs_dir)
    r = _run_mode(mode, args.settings, args.seeds, runs_dir, args.gin_bindings)
    results['modes'].append(r)
    print(f'{mode}: {r["runs"]} runs in {r["wall_seconds"]:.0f} s '
          f'({r["runs_per_hour"]:.1f} runs/h), exit {r["returncode"]}', flush=True)
  results['load_at_end'] = _load()
  by_mode = {r['mode']: r for r in results['modes']}
  print(f'\nload at end: {results["load_at_end"]}\n')
  print('| mode | runs | wall | runs/hour | vs sequential | mean wall per run |')
  print('|---|---|---|---|---|---|')
  base = by_mode.get('sequential', {}).get('runs_per_hour')
  for r in results['modes']:
    per_run = (sum(r['run_seconds'].values()) / len(r['run_seconds'])
               if r['run_seconds'] else float('nan'))
    ratio = f'{r["runs_per_hour"] / base:.2f}x' if base and r['runs_per_hour'] else ''
    print(f'| {r["mode"]} | {r["runs"]} | {r["wall_seconds"]:.0f} s | '
          f'{r["runs_per_hour"]:.1f} | {ratio} | {per_run:.0f} s |')
  if 'ray1' in by_mode and 'ray2' in by_mode and by_mode['ray1']['runs_per_hour']:
    target = 2 * by_mode['ray1']['runs_per_hour']
    print(f'\nray2 / (2 x ray1) = {by_mode["ray2"]["runs_per_hour"] / target:.2f} '
          '(target >= 0.9)')
  if args.output:
    jsonl.write_json(args.output, results, indent=1)  # Atomic, strict JSON.
  return 0


if __name__ == '__main__':
  sys.exit(main())
