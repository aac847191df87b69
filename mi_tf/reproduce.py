"""Reproduces the paper in one command: every setting x seed as an independent run, then a report.

  python -m mi_tf.reproduce all --suite=mnist --seeds=3 --runs_dir=../runs    # run + report
  python -m mi_tf.reproduce run --suite=mnist --seeds=3 --runs_dir=../runs    # runs only
  python -m mi_tf.reproduce run --suite=mnist --seeds=3 --runs_dir=DIR --dry_run  # commands
  python -m mi_tf.reproduce status --suite=mnist --seeds=3 --runs_dir=../runs
  python -m mi_tf.reproduce report --suite=mnist --seeds=3 --runs_dir=../runs --output_dir=.

A suite is a list of settings: each experiment gin file of gin/ (its stem names the setting)
and the probe-only baselines (the linear probe on raw X1 pixels, with and without the 0.05
noise of Sec. 3.1). Run k of a setting lives in ``<runs_dir>/<setting>/seed<k>`` and is one
subprocess, ``python train.py --gin_file=gin/<setting>.gin --model_dir=... --seed=k`` (or
``python eval_probe.py --pixels ... --output=.../probe_result.json``), so a crash or a NaN in
one run cannot take the others (or the runner) down and no gin state leaks between runs.

Resumable: a run is finished when its ``final_metrics.json`` (``probe_result.json`` for
probes) exists, and is then skipped; an interrupted run is rerun with the same command, which
resumes from its newest checkpoint (``mi_tf.train_lib``). A failed run (non-zero exit) is
recorded with the tail of its log in ``<runs_dir>/failures.json``, reported at the end and in
REPRODUCTION.md, and the runner goes on with the others. Runs are sequential; several runners
(on several machines sharing runs_dir) never run the same run twice at a time (a lock file
per run), and ``--dry_run`` prints the commands of the unfinished runs, one per line, for any
scheduler. Each run's output goes to ``<model_dir>/runner.log``.
"""

import argparse
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
import time

from mi_tf import jsonl

REPO_DIR = pathlib.Path(__file__).resolve().parents[1]
FAILURES_FILE = 'failures.json'
HISTORY_FILE = 'runner_history.jsonl'
RUNNER_LOG = 'runner.log'
LOCK_FILE = '.runner.lock'
FINISHED_MEANWHILE = 'finished meanwhile'  # execute(): another runner finished the run.
PROBE_RESULT = 'probe_result.json'
FINAL_METRICS = 'final_metrics.json'


@dataclasses.dataclass(frozen=True)
class Setting:
  """One experiment setting: a gin file to train (kind 'train') or a pixel probe ('probe').

  name: the directory under runs_dir (the gin file stem for gin/ files).
  gin_files: for 'train', gin files (relative to the repository root, or absolute).
  bindings: extra gin bindings of this setting (added after the runner's own).
  probe_args: for 'probe', arguments of eval_probe.py (e.g. ('--pixels', '--noise_std=0.05')).
  """
  name: str
  kind: str = 'train'
  gin_files: tuple = ()
  bindings: tuple = ()
  probe_args: tuple = ()

  @property
  def result_file(self):
    return PROBE_RESULT if self.kind == 'probe' else FINAL_METRICS


# Probe-only baselines (PAPER.md, "Reference figures"): the paper's linear probe on raw X1.
PROBE_BASELINES = {
    'baseline_pixels': ('--pixels',),                                  # about 85%
    'baseline_pixels_noisy': ('--pixels', '--noise_std=0.05'),         # about 84% (Sec. 3.1)
    'baseline_pixels_cifar10': ('--pixels', '--dataset=cifar10'),      # about 24% (App. G)
}

# The MNIST study, cheapest settings first (within each seed pass).
MNIST_SETTINGS = (
    'baseline_pixels', 'baseline_pixels_noisy',
    'sec4_noniid', 'sec4_noniid_nwj', 'sec4_iid', 'sec4_iid_nwj',
    'sec3_2_critics_bilinear_infonce', 'sec3_2_critics_bilinear_nwj',
    'sec3_2_critics_separable_infonce', 'sec3_2_critics_separable_nwj',
    'sec3_2_critics_concat_infonce', 'sec3_2_critics_concat_nwj',
    'baseline_supervised_mlp',
    'sec3_3_encoders_mlp_infonce_t2', 'sec3_3_encoders_mlp_infonce_t4',
    'sec3_3_encoders_mlp_nwj_t2', 'sec3_3_encoders_mlp_nwj_t4',
    'sec3_3_encoders_convnet_infonce_t2', 'sec3_3_encoders_convnet_infonce_t4',
    'sec3_3_encoders_convnet_nwj_t2', 'sec3_3_encoders_convnet_nwj_t4',
    'baseline_supervised_convnet',
    'sec3_1_resmlp', 'sec3_1_resmlp_nwj',
    'sec3_1_adversarial', 'sec3_1_adversarial_colab_lr',
    'sec3_1_realnvp', 'sec3_1_realnvp_nwj',
)

CIFAR10_SETTINGS = ('baseline_pixels_cifar10',) + tuple(
    f'cifar10_sec3_2_critics_{c}_{e}' for c in ('bilinear', 'separable', 'concat')
    for e in ('infonce', 'nwj')) + tuple(
        f'cifar10_sec3_3_encoders_{a}_{e}_t{t}' for a in ('mlp', 'convnet')
        for e in ('infonce', 'nwj') for t in (2, 4))

SUITES = {
    'mnist': MNIST_SETTINGS,
    'baselines': tuple(s for s in MNIST_SETTINGS if s.startswith('baseline_')),
    'sec3_1': tuple(s for s in MNIST_SETTINGS if s.startswith('sec3_1_')),
    'sec3_2': tuple(s for s in MNIST_SETTINGS if s.startswith('sec3_2_')),
    'sec3_3': tuple(s for s in MNIST_SETTINGS if s.startswith('sec3_3_')),
    'sec4': tuple(s for s in MNIST_SETTINGS if s.startswith('sec4_')),
    'cifar10': CIFAR10_SETTINGS,
}

# 1 seed unless told otherwise: the two RealNVP settings (1.4-2 h each on 2 CPU cores), and
# the adversarial encoder at the Colab's learning rates, a variant that is not one of the
# paper's settings and decides no claim (claim 2 is checked at the paper's rates).
DEFAULT_SETTING_SEEDS = {'sec3_1_realnvp': 1, 'sec3_1_realnvp_nwj': 1,
                         'sec3_1_adversarial_colab_lr': 1}


def make_setting(name, gin_dir='gin'):
  """The Setting of a gin file stem (gin/<name>.gin) or of a probe baseline name."""
  if name in PROBE_BASELINES:
    return Setting(name, kind='probe', probe_args=PROBE_BASELINES[name])
  return Setting(name, gin_files=(f'{gin_dir}/{name}.gin',))


def suite_settings(suites=(), names=()):
  """Settings of the named suites (comma lists allowed) and of explicit names, in order."""
  out = []
  for suite in [s for item in suites for s in item.split(',') if s]:
    if suite not in SUITES:
      raise ValueError(f'Unknown suite {suite!r}; choose from {sorted(SUITES)}.')
    out += SUITES[suite]
  out += [n for item in names for n in item.split(',') if n]
  unknown = [n for n in out if n not in PROBE_BASELINES
             and not (REPO_DIR / 'gin' / f'{n}.gin').is_file()]
  if unknown:
    raise ValueError(f'Unknown setting(s) {unknown}: not a gin/<name>.gin file nor one of '
                     f'{sorted(PROBE_BASELINES)}.')
  seen = set()
  return [make_setting(n) for n in out if not (n in seen or seen.add(n))]


@dataclasses.dataclass(frozen=True)
class Run:
  setting: Setting
  seed: int
  model_dir: str

  @property
  def key(self):
    return f'{self.setting.name}/seed{self.seed}'


def plan(settings, seeds, runs_dir, setting_seeds=None):
  """Runs in execution order: seed 0 of every setting, then seed 1, ... (seed-major).

  Args:
    settings: list of Setting.
    seeds: number of seeds per setting (seeds 0 .. seeds-1).
    runs_dir: root of the run directories.
    setting_seeds: dict name -> number of seeds overriding ``seeds`` for that setting.
  """
  setting_seeds = dict(DEFAULT_SETTING_SEEDS if setting_seeds is None else setting_seeds)
  counts = {s.name: setting_seeds.get(s.name, seeds) for s in settings}
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


def _format_duration(seconds):
  if seconds is None:
    return '?'
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))


def _read_json(path, default=None):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return default


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
  return _read_json(os.path.join(runs_dir, FAILURES_FILE), {}) or {}


def _update_failures(runs_dir, key, record):
  with _RunsDirLock(runs_dir):
    failures = read_failures(runs_dir)
    if record is None:
      if key not in failures:
        return
      failures.pop(key)
    else:
      failures[key] = record
    _write_json_atomic(os.path.join(runs_dir, FAILURES_FILE), failures)


def _append_history(runs_dir, record):
  with _RunsDirLock(runs_dir):
    with open(os.path.join(runs_dir, HISTORY_FILE), 'a') as f:
      f.write(json.dumps(record) + '\n')


def read_history(runs_dir):
  """Every run execution of the runner: dicts key, setting, seed, start, seconds, returncode."""
  return jsonl.read(os.path.join(runs_dir, HISTORY_FILE))


def _known_durations(runs, runs_dir):
  """setting -> seconds of one full run, from earlier executions or final_metrics.json."""
  durations = {}
  for record in read_history(runs_dir):
    if record.get('returncode') == 0 and record.get('state_before') == 'new':
      durations.setdefault(record['setting'], []).append(record['seconds'])
  timed = set(durations)
  for run in runs:
    final = _read_json(os.path.join(run.model_dir, FINAL_METRICS))
    if not final or run.setting.name in timed:
      continue
    if final.get('wall_seconds') is not None:  # All sessions.
      durations.setdefault(run.setting.name, []).append(final['wall_seconds'])
    elif 'wall_seconds_this_session' in final:
      info = _read_json(os.path.join(run.model_dir, 'run_info.json'), {})
      if len(info.get('sessions', [])) == 1:  # A whole run in one session.
        durations.setdefault(run.setting.name, []).append(final['wall_seconds_this_session'])
  return {k: sum(v) / len(v) for k, v in durations.items()}


class _Terminated(Exception):
  pass


def _session_output(path, offset):
  try:
    with open(path, 'rb') as f:
      f.seek(offset)
      return f.read().decode('utf-8', 'replace')
  except OSError:
    return ''


_LOGGED_ERROR = re.compile(r'\bERROR\b')
_EXCEPTION = re.compile(r'^[A-Za-z_][\w.]*(Error|Exception|Exit)\b:?')


def error_line(text):
  """The error of a run's output: the first line logged as ERROR (train.py reports bad input
  so), else the last exception line of a traceback, else the last non-empty line."""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  logged = [line for line in lines if _LOGGED_ERROR.search(line)]
  if logged:
    return logged[0]
  raised = [line for line in lines if _EXCEPTION.match(line)]
  if raised:
    return raised[-1]
  return lines[-1] if lines else ''


def execute(run, repo_dir=REPO_DIR, python=sys.executable, gin_bindings=(), data_dir=None,
            env=None):
  """Runs one run as a subprocess (output appended to <model_dir>/runner.log).

  Returns:
    (returncode, seconds, the run's output). returncode None: another runner holds the
    run's lock.
  Raises:
    _Terminated: the runner got SIGINT/SIGTERM; the child was sent SIGTERM (it checkpoints
      and stops) and has exited.
  """
  os.makedirs(run.model_dir, exist_ok=True)
  lock = open(os.path.join(run.model_dir, LOCK_FILE), 'a')
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    lock.close()
    return None, 0.0, ''
  if state(run) == 'finished':  # Another runner finished it between our check and the lock.
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    return None, 0.0, FINISHED_MEANWHILE
  log_path = os.path.join(run.model_dir, RUNNER_LOG)
  cmd = command(run, python, gin_bindings, data_dir)
  env = dict(os.environ if env is None else env)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  start = time.time()
  try:
    with open(log_path, 'a') as log:
      offset = log.tell()
      log.write(f'==== {datetime.datetime.now().isoformat(timespec="seconds")} '
                f'{" ".join(shlex.quote(a) for a in cmd)}\n')
      log.flush()
      # A new session: a Ctrl-C in the terminal reaches the runner only, which stops the
      # child with SIGTERM (checkpoint first) instead of killing it mid-write.
      # The child inherits the locked file: if this runner dies, the run stays locked until
      # the child exits (flock belongs to the open file, which the child then holds).
      proc = subprocess.Popen(cmd, cwd=str(repo_dir), stdout=log, stderr=subprocess.STDOUT,
                              env=env, start_new_session=True, pass_fds=(lock.fileno(),))
      try:
        returncode = proc.wait()
      except (KeyboardInterrupt, _Terminated):
        proc.send_signal(signal.SIGTERM)
        try:
          proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
          proc.kill()
          proc.wait()
        raise _Terminated() from None
    return returncode, time.time() - start, _session_output(log_path, offset)
  finally:
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


def run_all(runs, runs_dir, repo_dir=REPO_DIR, python=sys.executable, gin_bindings=(),
            data_dir=None, env=None, out=sys.stdout):
  """Runs every unfinished run in order; a failure is recorded and the next run starts.

  Prints one progress line per run: ``[k/N] setting seed<k> (state) elapsed, ETA`` and its
  outcome. On SIGINT/SIGTERM the current run is stopped with SIGTERM (it checkpoints) and
  SystemExit(130) is raised: rerunning the same command continues.

  Returns:
    dict of run-key lists: 'skipped' (finished before), 'completed', 'failed', 'busy'
    (another process on this machine, or another runner, is running it: left alone).
  """
  runs_dir = os.path.abspath(runs_dir)
  os.makedirs(runs_dir, exist_ok=True)
  summary = {'skipped': [], 'completed': [], 'failed': [], 'busy': []}
  durations = _known_durations(runs, runs_dir)  # setting -> seconds of one run.
  commit = git_info(repo_dir)
  begin = time.time()

  def eta(remaining):
    est = [durations.get(r.setting.name) for r in remaining]
    known = [e for e in est if e is not None]
    unknown = len(est) - len(known)
    return _format_duration(sum(known)) + (
        f' + {unknown} run(s) not yet timed' if unknown else '')

  def on_sigterm(signum, frame):  # pylint: disable=unused-argument
    raise _Terminated()

  old_handlers = {}
  # A closed terminal (SIGHUP) stops the runs like SIGTERM, unless SIGHUP is ignored (nohup).
  for sig in (signal.SIGTERM, signal.SIGHUP):
    if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
      continue
    try:
      old_handlers[sig] = signal.signal(sig, on_sigterm)
    except ValueError:  # Not the main thread: no handler.
      pass
  try:
    for k, run in enumerate(runs, 1):
      prefix = f'[{k}/{len(runs)}] {run.setting.name} seed{run.seed}'
      before = state(run)
      if before == 'finished':
        summary['skipped'].append(run.key)
        other = other_arguments(run, python, gin_bindings, data_dir)
        warning = ('' if other is None else
                   f'\n    WARNING: it ran with other arguments ({" ".join(other)}); move '
                   f'{run.model_dir} away to rerun it with these')
        print(f'{prefix} (finished: skipped){warning}', file=out, flush=True)
        continue
      pid = live_process(run.model_dir)
      if pid is not None:
        summary['busy'].append(run.key)
        print(f'{prefix} busy: process {pid} is running it; left alone', file=out, flush=True)
        continue
      step = checkpoint_step(run.model_dir)
      what = ('new' if before == 'new' else
              f'resume from step {step}' if step is not None else 'restart: no checkpoint')
      pending = [r for r in runs[k - 1:] if state(r) != 'finished']
      print(f'{prefix} ({what}) elapsed {_format_duration(time.time() - begin)}, '
            f'ETA {eta(pending)}', file=out, flush=True)
      try:
        returncode, seconds, output = execute(run, repo_dir, python, gin_bindings, data_dir, env)
      except _Terminated:
        print(f'{prefix} stopped with SIGTERM (it saved a checkpoint).', file=out, flush=True)
        raise
      if returncode is None and output == FINISHED_MEANWHILE:
        summary['skipped'].append(run.key)
        print(f'{prefix} finished meanwhile by another runner: skipped', file=out, flush=True)
        continue
      if returncode is None:
        summary['busy'].append(run.key)
        print(f'{prefix} busy: another runner holds {run.model_dir}', file=out, flush=True)
        continue
      record = {'key': run.key, 'setting': run.setting.name, 'seed': run.seed,
                'start': datetime.datetime.fromtimestamp(time.time() - seconds).isoformat(
                    timespec='seconds'),
                'seconds': seconds, 'returncode': returncode, 'state_before': before,
                'commit': commit}
      _append_history(runs_dir, record)
      if returncode == 0 and state(run) == 'finished':
        summary['completed'].append(run.key)
        _update_failures(runs_dir, run.key, None)
        if before == 'new':
          durations[run.setting.name] = seconds
        print(f'{prefix} finished in {_format_duration(seconds)}', file=out, flush=True)
        continue
      summary['failed'].append(run.key)
      failure = dict(record, command=command(run, python, gin_bindings, data_dir),
                     log=os.path.join(run.model_dir, RUNNER_LOG), error=error_line(output),
                     tail='\n'.join(output.splitlines()[-30:]))
      if returncode == 0:
        failure['error'] = f'exit status 0 but no {run.setting.result_file} was written'
      _update_failures(runs_dir, run.key, failure)
      print(f'{prefix} FAILED (exit status {returncode}) after {_format_duration(seconds)}: '
            f'{failure["error"][:300]}\n    log: {failure["log"]}', file=out, flush=True)
  except (_Terminated, KeyboardInterrupt):
    print('Stopped; rerun the same command to continue where it stopped.', file=out,
          flush=True)
    raise SystemExit(130) from None
  finally:
    for sig, handler in old_handlers.items():
      signal.signal(sig, handler)
  print(f'Done in {_format_duration(time.time() - begin)}: {len(summary["completed"])} '
        f'completed, {len(summary["skipped"])} already finished, {len(summary["failed"])} '
        f'failed, {len(summary["busy"])} busy.', file=out, flush=True)
  for key in summary['failed']:
    print(f'  FAILED {key} (details: {os.path.join(runs_dir, FAILURES_FILE)})', file=out,
          flush=True)
  return summary


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


def _parse_setting_seeds(text):
  out = dict(DEFAULT_SETTING_SEEDS)
  for item in [t for t in (text or '').split(',') if t]:
    name, _, n = item.partition('=')
    out[name.strip()] = int(n)
  return out


def _add_plan_flags(p):
  p.add_argument('--suite', action='append', default=[],
                 help=f'suite(s) to run: {", ".join(SUITES)} (comma list or repeated).')
  p.add_argument('--settings', action='append', default=[],
                 help='explicit settings: gin file stems of gin/ or probe baselines '
                      f'({", ".join(PROBE_BASELINES)}); comma list or repeated.')
  p.add_argument('--seeds', type=int, default=3, help='seeds 0 .. N-1 per setting.')
  p.add_argument('--setting_seeds', default='',
                 help='per-setting seed counts overriding --seeds, e.g. '
                      '"sec3_1_realnvp=3,sec4_iid=5" (default: '
                      + ','.join(f'{k}={v}' for k, v in DEFAULT_SETTING_SEEDS.items()) + ').')
  p.add_argument('--runs_dir', required=True,
                 help='root of the run directories (keep it outside the repository).')


def main(argv=None):
  parser = argparse.ArgumentParser(prog='python -m mi_tf.reproduce', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='cmd', required=True)
  p_run = sub.add_parser('run', help='run every unfinished setting x seed (resumable).')
  p_all = sub.add_parser('all', help='run, then write the report.')
  p_status = sub.add_parser('status', help='state of every planned run.')
  p_report = sub.add_parser('report', help='aggregate, figures, claim checks, '
                                           'REPRODUCTION.md.')
  for p in (p_run, p_all, p_status, p_report):
    _add_plan_flags(p)
  for p in (p_run, p_all):
    p.add_argument('--gin_bindings', action='append', default=[],
                   help='extra gin binding for every training run (repeatable).')
    p.add_argument('--data_dir', default=None, help='TFDS data directory for every run.')
    p.add_argument('--dry_run', action='store_true',
                   help='print the command of every unfinished run, one per line, and exit '
                        '(run them from the repository root).')
    p.add_argument('--python', default=sys.executable, help='Python of the runs.')
  for p in (p_all, p_report):
    p.add_argument('--output_dir', default=str(REPO_DIR),
                   help='where REPRODUCTION.md, figures/ and results/ are written '
                        '(default: the repository root).')
    p.add_argument('--tensorboard_dir', default=None,
                   help='TensorBoard dir of the figures (default: <runs_dir>/report_tb; '
                        '"none" to skip).')
  args = parser.parse_args(argv)
  if not args.suite and not args.settings:
    parser.error('give --suite and/or --settings.')
  try:
    settings = suite_settings(args.suite, args.settings)
  except ValueError as e:
    parser.error(str(e))
  runs = plan(settings, args.seeds, args.runs_dir, _parse_setting_seeds(args.setting_seeds))
  runs_dir = os.path.abspath(args.runs_dir)

  if args.cmd in ('run', 'all'):
    if args.dry_run:
      python = 'python' if args.python == sys.executable else args.python
      for run in runs:
        if state(run) != 'finished':
          print(shell_command(run, python, args.gin_bindings, args.data_dir))
      return 0
    if pathlib.Path(REPO_DIR) in pathlib.Path(runs_dir).parents:
      print(f'Warning: runs_dir {runs_dir} is inside the repository; keep checkpoints and '
            'event files out of commits.', file=sys.stderr)
    summary = run_all(runs, runs_dir, REPO_DIR, args.python, args.gin_bindings, args.data_dir)
    rc = 1 if summary['failed'] else 0
    if args.cmd == 'run':
      return rc
  elif args.cmd == 'status':
    rows = status_table(runs, runs_dir)
    width = max((len(r[0]) for r in rows), default=10)
    for key, st, detail in rows:
      print(f'{key:<{width}}  {st:<9} {detail}')
    counts = {s: sum(r[1] == s for r in rows)
              for s in ('finished', 'running', 'partial', 'failed', 'new')}
    print(', '.join(f'{v} {k}' for k, v in counts.items()) + f' of {len(rows)} runs')
    return 0
  else:
    rc = 0

  from mi_tf import report  # pylint: disable=g-import-not-at-top
  tb_dir = args.tensorboard_dir or os.path.join(runs_dir, 'report_tb')
  report.write_report(runs_dir, args.output_dir, runs,
                      tensorboard_dir=None if tb_dir == 'none' else tb_dir,
                      command=' '.join(['python -m mi_tf.reproduce'] + [
                          shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]))
  return rc


if __name__ == '__main__':
  sys.exit(main())
