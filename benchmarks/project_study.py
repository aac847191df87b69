#!/usr/bin/env python
"""Projects the wall time of a study on a machine: measured per-run times, the executor's own
packing. Prints a table; NOT a timed test.

  python benchmarks/project_study.py --suite=mnist --seeds=3 --cpus=2 \
      --concurrent_slowdown=1.22
  python benchmarks/project_study.py --durations=benchmarks/wall_split_after.json ...

--durations: JSON {setting: seconds of one full run alone on the machine, with every core}
(an entry may be {"seconds": s, "source": "how it was measured"}; keys starting with "_" are
notes), or {"settings": {setting: {"projected_full_run_seconds": s, ...}}}, what
benchmarks/wall_split.py writes. Default: the package's measured table,
mi_tf/study_durations.json (the runner's ETA reads it too: ``mi_tf.runs.measured_durations``).
Settings without a time are listed and left out.
--concurrent_slowdown: how much longer a run takes with fewer threads than cores, beside others
(measured by benchmarks/throughput.py: the mean wall per run under --jobs 2 over that under
--jobs 1, the same runs). The plan is the runner's (``mi_tf.runs.plan``) and the packing the
local executor's (``mi_tf.executor.Scheduler``), simulated event by event: a run starts as soon
as it fits, in plan order, as in ``executor.run_all``.
"""

import argparse
import heapq
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mi_tf import executor  # noqa: E402
from mi_tf import runs as runs_lib  # noqa: E402
from mi_tf import study  # noqa: E402


def load_durations(path):
  """{setting: seconds} from {setting: seconds | {"seconds": s, "source": ...}}, or from
  benchmarks/wall_split.py's {"settings": {setting: {"projected_full_run_seconds": s}}}."""
  with open(path) as f:
    data = json.load(f)
  if 'settings' in data:
    data = {k: v.get('projected_full_run_seconds') for k, v in data['settings'].items()}
  data = {k: (v.get('seconds') if isinstance(v, dict) else v) for k, v in data.items()
          if not k.startswith('_')}
  return {k: float(v) for k, v in data.items() if v is not None}


def simulate(runs, durations, machine, jobs=None, slowdown=1.0):
  """(makespan seconds, run-seconds) of the plan packed by executor.Scheduler."""
  sched = executor.Scheduler(machine, jobs)
  pending = list(runs)
  events = []  # (end time, sequence, allocation)
  now, seq, total = 0.0, 0, 0.0
  while pending or events:
    started = True
    while started:
      started = False
      for run in list(pending):
        allocation = sched.allocate(run.setting.resources)
        if allocation is None:
          continue
        pending.remove(run)
        # A run given fewer threads than the machine's cores shares it (or has fewer threads
        # than it had alone): measured slowdown; a run with every core is as measured alone.
        shares = allocation.threads < machine.cpus
        seconds = durations[run.setting.name] * (slowdown if shares else 1.0)
        total += seconds
        heapq.heappush(events, (now + seconds, seq, allocation))
        seq += 1
        started = True
        break
    if not events:
      break
    now, _, allocation = heapq.heappop(events)
    sched.release(allocation)
  return now, total


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--durations', default=None,
                      help='JSON of per-setting seconds (default: mi_tf/study_durations.json).')
  parser.add_argument('--suite', default='mnist')
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--cpus', type=int, default=2)
  parser.add_argument('--memory_gb', type=float, default=24.0)
  parser.add_argument('--concurrent_slowdown', type=float, default=1.0)
  args = parser.parse_args(argv)
  durations = (load_durations(args.durations) if args.durations
               else runs_lib.measured_durations())
  runs = runs_lib.plan(study.suite_settings([args.suite]), args.seeds, '/nonexistent')
  missing = sorted({r.setting.name for r in runs if r.setting.name not in durations})
  timed = [r for r in runs if r.setting.name in durations]
  machine = executor.Machine(args.cpus, (), args.memory_gb)
  seq, _ = simulate(timed, durations, machine, jobs=1)
  par, _ = simulate(timed, durations, machine, slowdown=args.concurrent_slowdown)
  print(f'{len(timed)} of {len(runs)} planned runs timed (seeds={args.seeds}); '
        f'missing: {missing or "none"}')
  print('| setting | resource class | seconds per run | runs |')
  print('|---|---|---|---|')
  for name in sorted({r.setting.name for r in timed}):
    n = sum(r.setting.name == name for r in timed)
    print(f'| {name} | {study.resource_class(name)} | {durations[name]:.0f} | {n} |')
  print(f'\nsequential (--jobs 1): {seq / 3600:.2f} h')
  print(f'default packing on {args.cpus} cores (slowdown {args.concurrent_slowdown:g} for '
        f'runs sharing the machine): {par / 3600:.2f} h')
  return 0


if __name__ == '__main__':
  sys.exit(main())
