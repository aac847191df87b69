"""One runs directory on disk: the plan of runs, their state, commands, execution, history.

Layout of ``runs_dir``:

  <setting>/seed<k>/          one run (its model_dir): train.py's output for a training
                              setting; ``probe_result.json`` for a probe baseline
  <setting>/seed<k>/runner.log      the output of every attempt, each after a line
                              ``==== <time> <argv>``
  <setting>/seed<k>/.runner.lock    flock-ed while a runner runs it
  failures.json               {run key: record} of runs that failed and have not finished since
  runner_history.jsonl        one line per attempt: key, setting, seed, start, seconds,
                              returncode, state_before, commit
  .runner_files.lock          serialises read-modify-write of the two files above

A run is one subprocess, ``python train.py --gin_file=gin/<setting>.gin --model_dir=...
--seed=k`` (or ``python eval_probe.py --pixels ... --output=.../probe_result.json``), so a
crash or a NaN in one run cannot take the others (or the runner) down and no gin state leaks
between runs. A run is finished when its ``final_metrics.json`` (``probe_result.json`` for
probes) exists, and is then skipped; an interrupted run is rerun with the same command, which
resumes from its newest checkpoint (``mi_tf.train_lib``). A failed run (non-zero exit) is
recorded with the tail of its log in ``failures.json`` and the runner goes on with the others.
Several runners (on several machines sharing runs_dir) never run the same run twice at a time.

Also here: how the wall time of a finished run is reconstructed from its directory and the
runner's history (``run_wall_seconds``, ``wall_seconds``), which the report quotes.
No TensorFlow import.
"""

import dataclasses
import datetime
import fcntl
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys

from mi_tf import jsonl
from mi_tf import study

REPO_DIR = study.REPO_DIR
PROBE_RESULT = study.PROBE_RESULT
FINAL_METRICS = study.FINAL_METRICS
FAILURES_FILE = 'failures.json'
HISTORY_FILE = 'runner_history.jsonl'
RUNNER_LOG = 'runner.log'
LOCK_FILE = '.runner.lock'
FINISHED_MEANWHILE = 'finished meanwhile'  # execute(): another runner finished the run.


@dataclasses.dataclass(frozen=True)
class Run:
  setting: study.Setting
  seed: int
  model_dir: str

  @property
  def key(self):
    return f'{self.setting.name}/seed{self.seed}'


def plan(settings, seeds, runs_dir, setting_seeds=None):
  """Runs in execution order: seed 0 of every setting, then seed 1, ... (seed-major).

  Args:
    settings: list of study.Setting.
    seeds: number of seeds per setting (seeds 0 .. seeds-1).
    runs_dir: root of the run directories.
    setting_seeds: dict name -> number of seeds overriding ``seeds`` for that setting.
      Settings not in it get ``seeds``, capped at ``study.DEFAULT_SETTING_SEEDS`` (the
      RealNVP settings: 3).
  """
  setting_seeds = dict(setting_seeds or {})
  counts = {s.name: setting_seeds.get(s.name, min(seeds, study.DEFAULT_SETTING_SEEDS.get(
      s.name, seeds))) for s in settings}
  runs = []
  for seed in range(max(counts.values(), default=0)):
    for s in settings:
      if seed < counts[s.name]:
        runs.append(Run(s, seed, os.path.join(os.path.abspath(runs_dir), s.name,
                                              f'seed{seed}')))
  return runs


def command(run, python=sys.executable, gin_bindings=(), data_dir=None):
  """argv of the single run (to be run from the repository root)."""
  s = run.setting
  if s.kind == 'probe':
    cmd = [python, 'eval_probe.py', *s.probe_args, f'--seed={run.seed}',
           f'--output={os.path.join(run.model_dir, PROBE_RESULT)}']
    if data_dir:
      cmd.append(f'--data_dir={data_dir}')
    return cmd
  cmd = [python, 'train.py'] + [f'--gin_file={f}' for f in s.gin_files]
  cmd += [f'--model_dir={run.model_dir}', f'--seed={run.seed}']
  cmd += [f'--gin_bindings={b}' for b in tuple(gin_bindings) + tuple(s.bindings)]
  if data_dir:
    cmd.append(f'--data_dir={data_dir}')
  return cmd


def _result_arguments(argv):
  """The arguments of a run's argv that decide its result: all but the interpreter and
  --data_dir (where the same data is read from)."""
  return [a for a in argv[1:] if not a.startswith('--data_dir=')]


def other_arguments(run, python=sys.executable, gin_bindings=(), data_dir=None):
  """The arguments a finished run was last started with by a runner, if they differ from
  this command's (e.g. a smoke test's --gin_bindings=train.num_steps=4), else None.

  Read from the last ``==== <time> <argv>`` line of <model_dir>/runner.log; None for runs
  the runner never started.
  """
  last = None
  try:
    with open(os.path.join(run.model_dir, RUNNER_LOG), errors='replace') as f:
      for line in f:
        if line.startswith('==== '):
          last = line
  except OSError:
    return None
  if last is None:
    return None
  try:
    recorded = _result_arguments(shlex.split(last[len('==== '):])[1:])  # Drop the time.
  except ValueError:  # An unparsable line: nothing to compare.
    return None
  current = _result_arguments(command(run, python, gin_bindings, data_dir))
  return None if recorded == current else recorded


def shell_command(run, python='python', gin_bindings=(), data_dir=None):
  """One shell line for ``--dry_run`` (probe runs create their directory first)."""
  line = ' '.join(shlex.quote(a) for a in command(run, python, gin_bindings, data_dir))
  if run.setting.kind == 'probe':
    line = f'mkdir -p {shlex.quote(run.model_dir)} && {line}'
  return line


def checkpoint_step(model_dir):
  """Step of the newest checkpoint file in <model_dir>/checkpoints, or None."""
  steps = [int(m.group(1)) for p in pathlib.Path(model_dir, 'checkpoints').glob('ckpt-*.index')
           if (m := re.fullmatch(r'ckpt-(\d+)\.index', p.name))]
  return max(steps) if steps else None


def state(run):
  """'finished', 'partial' (started, not finished: resumed when run) or 'new'."""
  d = pathlib.Path(run.model_dir)
  if (d / run.setting.result_file).is_file():
    return 'finished'
  if run.setting.kind == 'train' and ((d / 'config.gin').is_file()
                                      or (d / 'checkpoints').is_dir()):
    return 'partial'
  return 'new'


def git_info(repo_dir=REPO_DIR):
  """Short commit of the code the runs use, '(with uncommitted changes)' if the tree is dirty."""
  try:
    sha = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=repo_dir, check=True,
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                           cwd=repo_dir, check=True, capture_output=True, text=True).stdout
    return sha + (' (with uncommitted changes)' if dirty.strip() else '')
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def live_process(model_dir):
  """PID of a process on this machine whose command line names ``model_dir`` (a train.py or
  eval_probe.py started by hand, by a script or by another runner), else None.

  Reads /proc (Linux); elsewhere returns None.
  """
  target = os.path.abspath(model_dir)
  probe_output = os.path.join(target, PROBE_RESULT)
  for proc in pathlib.Path('/proc').glob('[0-9]*'):
    try:
      args = (proc / 'cmdline').read_bytes().decode('utf-8', 'replace').split('\0')
      if not any('model_dir' in a or '--output' in a for a in args):
        continue
      cwd = os.readlink(proc / 'cwd')
    except OSError:  # Gone, or not ours to read.
      continue
    values = []
    for i, a in enumerate(args):
      for flag in ('--model_dir', '--output'):
        if a.startswith(flag + '='):
          values.append(a.split('=', 1)[1])
        elif a == flag and i + 1 < len(args):
          values.append(args[i + 1])
    for v in values:
      path = os.path.abspath(os.path.join(cwd, v))
      if path in (target, probe_output):
        return int(proc.name)
  return None


def format_duration(seconds):
  if seconds is None:
    return '?'
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))



def _write_json_atomic(path, obj):
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


class _RunsDirLock:
  """Serialises read-modify-write of the shared files of runs_dir between runners."""

  def __init__(self, runs_dir):
    self.path = os.path.join(runs_dir, '.runner_files.lock')

  def __enter__(self):
    self.f = open(self.path, 'a')
    fcntl.flock(self.f, fcntl.LOCK_EX)
    return self

  def __exit__(self, *exc):
    fcntl.flock(self.f, fcntl.LOCK_UN)
    self.f.close()


def read_failures(runs_dir):
  """{run key: failure record} of runs that failed and have not finished since."""
  return jsonl.read_json(os.path.join(runs_dir, FAILURES_FILE), {}) or {}


def update_failures(runs_dir, key, record):
  with _RunsDirLock(runs_dir):
    failures = read_failures(runs_dir)
    if record is None:
      if key not in failures:
        return
      failures.pop(key)
    else:
      failures[key] = record
    _write_json_atomic(os.path.join(runs_dir, FAILURES_FILE), failures)


def append_history(runs_dir, record):
  with _RunsDirLock(runs_dir):
    with open(os.path.join(runs_dir, HISTORY_FILE), 'a') as f:
      f.write(json.dumps(record) + '\n')


def read_history(runs_dir):
  """Every run execution of the runner: dicts key, setting, seed, start, seconds, returncode."""
  return jsonl.read(os.path.join(runs_dir, HISTORY_FILE))


def known_durations(runs, runs_dir):
  """setting -> seconds of one full run, from earlier executions or final_metrics.json."""
  durations = {}
  for record in read_history(runs_dir):
    if record.get('returncode') == 0 and record.get('state_before') == 'new':
      durations.setdefault(record['setting'], []).append(record['seconds'])
  timed = set(durations)
  for run in runs:
    final = jsonl.read_json(os.path.join(run.model_dir, FINAL_METRICS))
    if not final or run.setting.name in timed:
      continue
    if final.get('wall_seconds') is not None:  # All sessions.
      durations.setdefault(run.setting.name, []).append(final['wall_seconds'])
    elif 'wall_seconds_this_session' in final:
      info = jsonl.read_json(os.path.join(run.model_dir, 'run_info.json'), {})
      if len(info.get('sessions', [])) == 1:  # A whole run in one session.
        durations.setdefault(run.setting.name, []).append(final['wall_seconds_this_session'])
  return {k: sum(v) / len(v) for k, v in durations.items()}


def status_table(runs, runs_dir):
  """Rows (key, state, detail) of every planned run."""
  failures = read_failures(runs_dir)
  rows = []
  for run in runs:
    st = state(run)
    detail = ''
    if st == 'partial':
      step = checkpoint_step(run.model_dir)
      detail = f'checkpoint step {step}' if step is not None else 'no checkpoint yet'
    pid = live_process(run.model_dir) if st != 'finished' else None
    if pid is not None:
      st, detail = 'running', f'process {pid}; {detail}'
    if st == 'finished':
      other = other_arguments(run)
      detail = '' if other is None else f'ran with other arguments: {" ".join(other)}'
    if st not in ('finished', 'running') and run.key in failures:  # A retry is 'running'.
      st = 'failed'
      detail = f'exit status {failures[run.key].get("returncode")} at ' \
               f'{failures[run.key].get("start")}'
    rows.append((run.key, st, detail))
  return rows


# ------------------------------------------------------------------ wall times

# Exit statuses of a runner attempt that ended a training session: finished, or SIGTERM.
_SESSION_ENDS = (0, -signal.SIGTERM, 128 + signal.SIGTERM)


def run_wall_seconds(run, history_seconds=None):
  """(seconds, exact?) of a finished run.

  Args:
    run: a loaded run directory: a dict with 'kind' ('train' or 'probe'), 'final' (its
      final_metrics.json or probe_result.json) and 'run_info' (its run_info.json).
    history_seconds: the run's time from the runner's history, if every session is in it.

  In order: final_metrics.json's ``wall_seconds`` (all sessions, written by the training loop
  since it records them), the runner history if the runner ran every session, else the last
  session's ``wall_seconds_this_session`` (exact only for a run in one session).
  """
  final = run.get('final') or {}
  sessions = len((run.get('run_info') or {}).get('sessions', [])) or 1
  if final.get('wall_seconds') is not None and run['kind'] == 'train':
    return final['wall_seconds'], True
  if history_seconds is not None and run['kind'] == 'train':
    return history_seconds, True
  if run['kind'] == 'probe':
    return final.get('seconds'), True
  return final.get('wall_seconds_this_session'), sessions == 1


def wall_seconds(runs, runs_dir):
  """{setting: [(seconds, exact?) of each finished run with a known time]}, in seed order.

  Args:
    runs: {setting: {seed: loaded run}} (dicts as for ``run_wall_seconds``, with 'finished').
    runs_dir: the root whose runner history is read.
  """
  history = {}
  for record in read_history(runs_dir):
    history.setdefault(record['key'], []).append(record)
  out = {}
  for s, by_seed in runs.items():
    for seed, run in by_seed.items():
      if not run['finished']:
        continue
      entries = history.get(f'{s}/seed{seed}', [])
      sessions = len((run.get('run_info') or {}).get('sessions', [])) or 1
      # The runner's history is the run's time if its attempts are exactly the sessions: each
      # ended finished or stopped by SIGTERM; a failed attempt may not have trained.
      hist = (sum(e['seconds'] for e in entries)
              if len(entries) == sessions and all(e.get('returncode') in _SESSION_ENDS
                                                  for e in entries) else None)
      sec, ok = run_wall_seconds(run, hist)
      if sec is not None:
        out.setdefault(s, []).append((sec, ok))
  return out
