"""Executes the runs of a plan on this machine, one after the other, as subprocesses.

Each run is ``mi_tf.runs.command(run)``, started from the repository root with its output appended
to ``<model_dir>/runner.log``; a lock file per run (flock) keeps two runners (on several
machines sharing runs_dir) from running the same run at a time, and the child inherits it. A
failure is recorded in ``failures.json`` and the next run starts; every attempt is a line of
``runner_history.jsonl``. SIGINT, SIGTERM (and SIGHUP, unless ignored) stop the current run
with SIGTERM, so that it checkpoints first. No TensorFlow import.
"""

import datetime
import fcntl
import os
import re
import shlex
import signal
import subprocess
import sys
import time

from mi_tf import runs as runs_lib


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


def execute(run, repo_dir=runs_lib.REPO_DIR, python=sys.executable, gin_bindings=(), data_dir=None,
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
  lock = open(os.path.join(run.model_dir, runs_lib.LOCK_FILE), 'a')
  try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    lock.close()
    return None, 0.0, ''
  # Another runner may have finished it between our check and the lock.
  if runs_lib.state(run) == 'finished':
    fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()
    return None, 0.0, runs_lib.FINISHED_MEANWHILE
  log_path = os.path.join(run.model_dir, runs_lib.RUNNER_LOG)
  cmd = runs_lib.command(run, python, gin_bindings, data_dir)
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


def run_all(runs, runs_dir, repo_dir=runs_lib.REPO_DIR, python=sys.executable, gin_bindings=(),
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
  durations = runs_lib.known_durations(runs, runs_dir)  # setting -> seconds of one run.
  commit = runs_lib.git_info(repo_dir)
  begin = time.time()

  def eta(remaining):
    est = [durations.get(r.setting.name) for r in remaining]
    known = [e for e in est if e is not None]
    unknown = len(est) - len(known)
    return runs_lib.format_duration(sum(known)) + (
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
      before = runs_lib.state(run)
      if before == 'finished':
        summary['skipped'].append(run.key)
        other = runs_lib.other_arguments(run, python, gin_bindings, data_dir)
        warning = ('' if other is None else
                   f'\n    WARNING: it ran with other arguments ({" ".join(other)}); move '
                   f'{run.model_dir} away to rerun it with these')
        print(f'{prefix} (finished: skipped){warning}', file=out, flush=True)
        continue
      pid = runs_lib.live_process(run.model_dir)
      if pid is not None:
        summary['busy'].append(run.key)
        print(f'{prefix} busy: process {pid} is running it; left alone', file=out, flush=True)
        continue
      step = runs_lib.checkpoint_step(run.model_dir)
      what = ('new' if before == 'new' else
              f'resume from step {step}' if step is not None else 'restart: no checkpoint')
      pending = [r for r in runs[k - 1:] if runs_lib.state(r) != 'finished']
      print(f'{prefix} ({what}) elapsed {runs_lib.format_duration(time.time() - begin)}, '
            f'ETA {eta(pending)}', file=out, flush=True)
      try:
        returncode, seconds, output = execute(run, repo_dir, python, gin_bindings, data_dir, env)
      except _Terminated:
        print(f'{prefix} stopped with SIGTERM (it saved a checkpoint).', file=out, flush=True)
        raise
      if returncode is None and output == runs_lib.FINISHED_MEANWHILE:
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
      runs_lib.append_history(runs_dir, record)
      if returncode == 0 and runs_lib.state(run) == 'finished':
        summary['completed'].append(run.key)
        runs_lib.update_failures(runs_dir, run.key, None)
        if before == 'new':
          durations[run.setting.name] = seconds
        print(f'{prefix} finished in {runs_lib.format_duration(seconds)}', file=out, flush=True)
        continue
      summary['failed'].append(run.key)
      failure = dict(record, command=runs_lib.command(run, python, gin_bindings, data_dir),
                     log=os.path.join(run.model_dir, runs_lib.RUNNER_LOG), error=error_line(output),
                     tail='\n'.join(output.splitlines()[-30:]))
      if returncode == 0:
        failure['error'] = f'exit status 0 but no {run.setting.result_file} was written'
      runs_lib.update_failures(runs_dir, run.key, failure)
      print(f'{prefix} FAILED (exit status {returncode}) after '
            f'{runs_lib.format_duration(seconds)}: '
            f'{failure["error"][:300]}\n    log: {failure["log"]}', file=out, flush=True)
  except (_Terminated, KeyboardInterrupt):
    print('Stopped; rerun the same command to continue where it stopped.', file=out,
          flush=True)
    raise SystemExit(130) from None
  finally:
    for sig, handler in old_handlers.items():
      signal.signal(sig, handler)
  print(f'Done in {runs_lib.format_duration(time.time() - begin)}: {len(summary["completed"])} '
        f'completed, {len(summary["skipped"])} already finished, {len(summary["failed"])} '
        f'failed, {len(summary["busy"])} busy.', file=out, flush=True)
  for key in summary['failed']:
    print(f'  FAILED {key} (details: {os.path.join(runs_dir, runs_lib.FAILURES_FILE)})', file=out,
          flush=True)
  return summary
