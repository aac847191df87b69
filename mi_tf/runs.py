"""One runs directory: the plan of runs, their state, commands, and the runner's records.

Layout of ``runs_dir`` (a local path, a shared file system, or any path ``tf.io.gfile``
handles, such as ``gs://bucket/runs``: every file here goes through ``mi_tf.files``):

  <setting>/seed<k>/          one run (its model_dir): the training's output for a
                              setting; ``probe_result.json`` for a probe baseline
  <setting>/seed<k>/runner.log      the output of every attempt, each after a line
                              ``==== <time> <argv>``
  <setting>/seed<k>/runner_attempts.json   every attempt of the runner: key, setting, seed,
                              start, seconds, returncode, state_before, commit, host, node
  <setting>/seed<k>/runner_failure.json    the last attempt's failure (error line, log tail,
                              command), present only while the run has failed and not
                              finished since
  <setting>/seed<k>/.runner.lease   held by the driver executing the run (``mi_tf.leases``)

Every file of a run is written only by the driver holding the run's lease, so several drivers
(on several machines sharing runs_dir, or a Ray driver) never write the same file, and each
run directory describes itself. (Runs directories of older versions kept the failures and the
history in ``runs_dir/failures.json`` and ``runs_dir/runner_history.jsonl``; both are still
read.)

A run is one subprocess, ``python -m mi_tf.scripts.train --gin_file=gin/<setting>.gin
--model_dir=... --seed=k`` (or ``python -m mi_tf.scripts.probe --pixels ...
--output=.../probe_result.json``), which needs no checkout, so a
crash or a NaN in one run cannot take the others (or the runner) down and no gin state leaks
between runs. A run is finished when its ``final_metrics.json`` (``probe_result.json`` for
probes) exists, and is then skipped; an interrupted run is rerun with the same command, which
resumes from its newest checkpoint (``mi_tf.train_lib``).

Also here: how the wall time of a finished run is reconstructed from its directory and the
runner's history (``run_wall_seconds``, ``wall_seconds``), which the report quotes.
No TensorFlow import for local paths.
"""

import dataclasses
import datetime
import importlib.resources
import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys

from mi_tf import files
from mi_tf import jsonl
from mi_tf import leases
from mi_tf import study

REPO_DIR = study.REPO_DIR
PROBE_RESULT = study.PROBE_RESULT
FINAL_METRICS = study.FINAL_METRICS
ATTEMPTS_FILE = 'runner_attempts.json'
FAILURE_FILE = 'runner_failure.json'
RUNNER_LOG = 'runner.log'
# Runs directories of older versions: the runner's records at the root (read, never written).
LEGACY_FAILURES_FILE = 'failures.json'
LEGACY_HISTORY_FILE = 'runner_history.jsonl'


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
        runs.append(Run(s, seed, files.join(files.abspath(runs_dir), s.name, f'seed{seed}')))
  return runs


TRAIN_MODULE = 'mi_tf.scripts.train'  # What a training run executes: python -m TRAIN_MODULE.
PROBE_MODULE = 'mi_tf.scripts.probe'  # What a probe run executes.


def command(run, python=sys.executable, gin_bindings=(), data_dir=None):
  """argv of the single run: ``python -m mi_tf.scripts.train ...`` (``... .probe`` for a
  probe run). It needs no checkout and runs from any directory: the gin files are names that
  ``gin_files.resolve`` finds in the package."""
  s = run.setting
  if s.kind == 'probe':
    cmd = [python, '-m', PROBE_MODULE, *s.probe_args, f'--seed={run.seed}',
           f'--output={os.path.join(run.model_dir, PROBE_RESULT)}']
    if data_dir:
      cmd.append(f'--data_dir={data_dir}')
    return cmd
  cmd = [python, '-m', TRAIN_MODULE] + [f'--gin_file={f}' for f in s.gin_files]
  cmd += [f'--model_dir={run.model_dir}', f'--seed={run.seed}']
  cmd += [f'--gin_bindings={b}' for b in tuple(gin_bindings) + tuple(s.bindings)]
  if data_dir:
    cmd.append(f'--data_dir={data_dir}')
  return cmd


def _result_arguments(argv):
  """The arguments of a run's argv that decide its result: from the first ``--`` argument
  on (so the interpreter and the program, ``train.py`` of older runners or ``-m
  mi_tf.scripts.train``, do not count), all but --data_dir (where the same data is read
  from)."""
  first = next((i for i, a in enumerate(argv) if a.startswith('--')), len(argv))
  return [a for a in argv[first:] if not a.startswith('--data_dir=')]


def other_arguments(run, python=sys.executable, gin_bindings=(), data_dir=None):
  """The arguments a finished run was last started with by a runner, if they differ from
  this command's (e.g. a smoke test's --gin_bindings=train.num_steps=4), else None.

  Read from the last ``==== <time> <argv>`` line of <model_dir>/runner.log; None for runs
  the runner never started.
  """
  last = None
  try:
    text = files.read_text(files.join(run.model_dir, RUNNER_LOG))
  except OSError:
    return None
  for line in text.splitlines():
    if line.startswith('==== '):
      last = line
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
  steps = [int(m.group(1)) for p in files.glob(files.join(model_dir, 'checkpoints', 'ckpt-*.index'))
           if (m := re.fullmatch(r'ckpt-(\d+)\.index', os.path.basename(p)))]
  return max(steps) if steps else None


def state(run):
  """'finished', 'partial' (started, not finished: resumed when run) or 'new'."""
  d = run.model_dir
  if files.isfile(files.join(d, run.setting.result_file)):
    return 'finished'
  if run.setting.kind == 'train' and (files.isfile(files.join(d, 'config.gin'))
                                      or files.isdir(files.join(d, 'checkpoints'))):
    return 'partial'
  return 'new'


# The reason train_lib.degenerate_reasons gives when the training objective did not fall.
_OBJECTIVE_REASON = re.compile(r'^the training loss did not fall\b')


def _loss_is_not_the_objective(config):
  """True if a run's config.gin (text) trains an estimator of
  ``study.TRAINED_WITH_ANOTHER_OBJECTIVE`` without a target: its logged 'loss' is -I_EST, the
  estimate's value, while the gradient is the Jensen-Shannon objective's, so the loss need not
  fall in a run that learns (NWJ on a JS-trained critic falls to -1e3 and below while the
  probe reaches 87% on sec3_2_critics_bilinear_js). ``MIMaximization.train_objective`` is None
  for such runs; runs trained before it was recorded 'the training loss did not fall' for
  them."""
  m = re.search(r"^MIMaximization\.estimator\s*=\s*['\"]([\w.]+)['\"]\s*$", config or '', re.M)
  return bool(m and m.group(1) in study.TRAINED_WITH_ANOTHER_OBJECTIVE
              and not re.search(r'^MIMaximization\.target\s*=\s*(?!None\b)\S', config, re.M))


def recorded_degenerate_reasons(final, config):
  """Why a finished training run learned nothing, from its final_metrics.json (dict) and
  config.gin (text); None for an ordinary run (or one written before runs recorded a status).
  The training loss's reason is dropped where that loss is not the objective the run descends
  (``_loss_is_not_the_objective``)."""
  if not isinstance(final, dict) or final.get('status') != 'degenerate':
    return None
  reasons = [str(r) for r in final.get('degenerate_reasons') or []] or ['no reason recorded']
  if _loss_is_not_the_objective(config):
    reasons = [r for r in reasons if not _OBJECTIVE_REASON.match(r)]
  return reasons or None


def degenerate_reasons(run):
  """Why a finished training run learned nothing (its final_metrics.json has status
  'degenerate': ``mi_tf.train_lib.degenerate_reasons``; ``recorded_degenerate_reasons``), or
  None: an ordinary run, a probe, not finished, or written before runs recorded a status."""
  if run.setting.kind != 'train':
    return None
  config = files.join(run.model_dir, 'config.gin')
  return recorded_degenerate_reasons(
      jsonl.read_json(files.join(run.model_dir, FINAL_METRICS)),
      files.read_text(config) if files.isfile(config) else None)


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
  target = files.abspath(model_dir)
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
      path = files.abspath(v if not files.is_local(v) else os.path.join(cwd, v))
      if path in (target, probe_output):
        return int(proc.name)
  return None


def format_duration(seconds):
  if seconds is None:
    return '?'
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))



def read_failures(runs_dir, runs=None):
  """{run key: failure record} of runs whose last attempt failed and that have not finished
  since: each run's ``runner_failure.json`` (of ``runs``, or of every run directory under
  runs_dir), and the root ``failures.json`` of older versions."""
  out = {}
  legacy = jsonl.read_json(files.join(runs_dir, LEGACY_FAILURES_FILE), {}) or {}
  out.update(legacy)
  for path in _run_files(runs_dir, runs, FAILURE_FILE):
    record = jsonl.read_json(path)
    if record and 'key' in record:
      out[record['key']] = record
  return out


def _run_files(runs_dir, runs, name):
  if runs is not None:
    return [p for p in (files.join(r.model_dir, name) for r in runs) if files.exists(p)]
  return files.glob(files.join(runs_dir, '*', 'seed*', name))


def write_failure(run, record):
  """Records (or, with None, clears) the run's failure; atomic. Only the lease holder calls it."""
  path = files.join(run.model_dir, FAILURE_FILE)
  if record is None:
    files.remove(path)
  else:
    files.write_atomic(path, json.dumps(record, indent=2, sort_keys=True))


def append_attempt(run, record):
  """Adds one attempt to the run's ``runner_attempts.json`` (rewritten atomically: object
  stores cannot append). Only the lease holder calls it."""
  path = files.join(run.model_dir, ATTEMPTS_FILE)
  attempts = jsonl.read_json(path, []) or []
  attempts.append(record)
  files.write_atomic(path, json.dumps(attempts, indent=1))


def read_history(runs_dir, runs=None):
  """Every attempt of the runner, in start order: dicts key, setting, seed, start, seconds,
  returncode, state_before, commit (and host, node)."""
  records = list(jsonl.read(files.join(runs_dir, LEGACY_HISTORY_FILE)))
  for path in _run_files(runs_dir, runs, ATTEMPTS_FILE):
    records += [r for r in (jsonl.read_json(path, []) or []) if isinstance(r, dict)]
  return sorted(records, key=lambda r: str(r.get('start', '')))


def sweep_wall_seconds(runs_dir, runs=None, history=None):
  """The sweep's wall time from the runner's attempts (``history``: their records, else
  ``read_history(runs_dir, runs)``): (seconds during which at least one run was running, the
  union of the attempts' intervals; seconds from the first start to the last end), or (0, 0)
  without attempts. Attempts cut off with their runner (a session killed before it could
  record them) are missing, so both are lower bounds then."""
  records = read_history(runs_dir, runs) if history is None else history
  spans = sorted((float(r['start_time']), float(r['start_time']) + float(r['seconds']))
                 for r in records
                 if isinstance(r.get('start_time'), (int, float))
                 and isinstance(r.get('seconds'), (int, float)))
  if not spans:
    return 0.0, 0.0
  busy, (lo, hi) = 0.0, spans[0]
  for a, b in spans[1:]:
    if a > hi:
      busy, lo, hi = busy + hi - lo, a, b
    else:
      hi = max(hi, b)
  busy += hi - lo
  return busy, max(b for _, b in spans) - spans[0][0]


def known_durations(runs, runs_dir):
  """setting -> seconds of one full run, from earlier executions or final_metrics.json."""
  durations = {}
  for record in read_history(runs_dir, runs):
    if record.get('returncode') == 0 and record.get('state_before') == 'new':
      durations.setdefault(record['setting'], []).append(record['seconds'])
  timed = set(durations)
  for run in runs:
    final = jsonl.read_json(files.join(run.model_dir, FINAL_METRICS))
    if not final or run.setting.name in timed:
      continue
    if final.get('wall_seconds') is not None:  # All sessions.
      durations.setdefault(run.setting.name, []).append(final['wall_seconds'])
    elif 'wall_seconds_this_session' in final:
      info = jsonl.read_json(files.join(run.model_dir, 'run_info.json'), {})
      if len(info.get('sessions', [])) == 1:  # A whole run in one session.
        durations.setdefault(run.setting.name, []).append(final['wall_seconds_this_session'])
  return {k: sum(v) / len(v) for k, v in durations.items()}


# Package data (in the wheel through setup.py's package_data): {setting: {'seconds', 'source'}}
# and a '_note' naming the machine and the day they were measured on.
MEASURED_DURATIONS_FILE = 'study_durations.json'


def measured_durations(with_sources=False):
  """setting -> seconds of one full run alone, as measured on the machine that
  ``mi_tf/study_durations.json``'s note names (a 2-core CPU VM): the runner's ETA for
  settings no run of this runs directory has timed yet (``known_durations`` comes first).

  Args:
    with_sources: return {setting: {'seconds': s, 'source': how it was measured}} instead.
  """
  text = importlib.resources.files('mi_tf').joinpath(MEASURED_DURATIONS_FILE).read_text()
  table = {k: v for k, v in json.loads(text).items() if not k.startswith('_')}
  if with_sources:
    return table
  return {k: float(v['seconds']) for k, v in table.items()}


def status_table(runs, runs_dir):
  """Rows (key, state, detail) of every planned run."""
  failures = read_failures(runs_dir, runs)
  rows = []
  for run in runs:
    st = state(run)
    detail = ''
    if st == 'partial':
      step = checkpoint_step(run.model_dir)
      detail = f'checkpoint step {step}' if step is not None else 'no checkpoint yet'
    pid = live_process(run.model_dir) if st != 'finished' else None
    lease = leases.read(run.model_dir) if st != 'finished' else None
    if pid is not None:
      st, detail = 'running', f'process {pid}; {detail}'
    elif lease is not None and not leases.is_stale(lease):
      st, detail = 'running', f'driver {lease.get("owner")}; {detail}'
    if st == 'finished':
      other = other_arguments(run)
      reasons = degenerate_reasons(run)
      detail = '; '.join(
          ([f'(degenerate: {"; ".join(reasons)})'] if reasons is not None else [])
          + ([f'ran with other arguments: {" ".join(other)}'] if other is not None else []))
    if st not in ('finished', 'running') and run.key in failures:  # A retry is 'running'.
      st = 'failed'
      detail = f'exit status {failures[run.key].get("returncode")} at ' \
               f'{failures[run.key].get("start")}'
    rows.append((run.key, st, detail))
  return rows


# ------------------------------------------------------------------ wall times

# Exit statuses of a runner attempt that ended a training session: finished, or stopped by
# SIGTERM or SIGINT (the training checkpoints first and exits with 128 + the signal).
STOPPED = (-signal.SIGTERM, 128 + signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGINT)
_SESSION_ENDS = (0,) + STOPPED


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


def wall_seconds(runs, runs_dir, history=None):
  """{setting: [(seconds, exact?) of each finished run with a known time]}, in seed order.

  Args:
    runs: {setting: {seed: loaded run}} (dicts as for ``run_wall_seconds``, with 'finished').
    runs_dir: the root whose runner history is read (unless ``history`` gives its records,
      ``read_history(runs_dir)``).
  """
  by_key = {}
  for record in read_history(runs_dir) if history is None else history:
    by_key.setdefault(record['key'], []).append(record)
  out = {}
  for s, by_seed in runs.items():
    for seed, run in by_seed.items():
      if not run['finished']:
        continue
      entries = by_key.get(f'{s}/seed{seed}', [])
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
