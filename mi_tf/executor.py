"""Executes the runs of a plan on this machine: several at once, each sized to what it needs.

Each run is ``mi_tf.runs.command(run)``, a subprocess started from the repository root with
its output appended to ``<model_dir>/runner.log``. ``run_all`` keeps as many runs going as the
machine holds (``Machine``: CPU cores, GPUs, memory; each setting's ``study.Resources``) and
at most ``jobs``; ``jobs=1`` is the sequential runner. Each child gets its share through its
environment: TensorFlow's intra-/inter-op thread pools and the BLAS threads set to its cores,
``CUDA_VISIBLE_DEVICES`` naming its GPU and ``TF_FORCE_GPU_ALLOW_GROWTH`` so that several runs
share one GPU (TensorFlow otherwise maps all of a GPU's memory in the first process).

Before a run starts the driver takes its lease (``mi_tf.leases``: an atomic create-if-absent
file, on any file system), so several drivers sharing runs_dir never run the same run at a
time; children die with their driver (a parent-death signal, SIGTERM: they checkpoint
first). A failure is recorded in the run's ``runner_failure.json`` and the next run starts;
every attempt is an entry of the run's ``runner_attempts.json``. SIGINT, SIGTERM (and SIGHUP,
unless ignored) stop the running children with SIGTERM, so that they checkpoint, and the
driver exits with status 130: rerunning the same command continues. No TensorFlow import.
"""

import ctypes
import dataclasses
import datetime
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from mi_tf import files
from mi_tf import leases
from mi_tf import runs as runs_lib

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


# ------------------------------------------------------------------ the machine

@dataclasses.dataclass(frozen=True)
class Machine:
  """What this machine offers the runs: CPU cores, GPU indices, memory (GiB)."""
  cpus: int
  gpus: tuple
  memory_gb: float

  def describe(self):
    gpus = f'{len(self.gpus)} GPU(s) ({",".join(self.gpus)})' if self.gpus else 'no GPU'
    return f'{self.cpus} CPU core(s), {gpus}, {self.memory_gb:.0f} GiB'


def _visible_gpus():
  """GPU indices: CUDA_VISIBLE_DEVICES if set, else what ``nvidia-smi -L`` lists."""
  visible = os.environ.get('CUDA_VISIBLE_DEVICES')
  if visible is not None:
    return tuple(g.strip() for g in visible.split(',') if g.strip() and g.strip() != '-1')
  if shutil.which('nvidia-smi') is None:
    return ()
  try:
    out = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, timeout=20,
                         check=False).stdout
  except (OSError, subprocess.TimeoutExpired):
    return ()
  return tuple(str(i) for i, _ in enumerate(
      line for line in out.splitlines() if line.startswith('GPU ')))


def _memory_gb():
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemTotal:'):
          return int(line.split()[1]) / 2**20
  except OSError:
    pass
  return 8.0


def detect_machine():
  cpus = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  return Machine(cpus=max(1, cpus or 1), gpus=_visible_gpus(), memory_gb=_memory_gb())


@dataclasses.dataclass(frozen=True)
class Allocation:
  threads: int
  gpu: str = None      # The GPU index of CUDA_VISIBLE_DEVICES, or None (CPU only).
  gpu_share: float = 0.0
  memory_gb: float = 0.0


def child_env(allocation, base=None):
  """The environment of a run given its share of the machine."""
  env = dict(os.environ if base is None else base)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  n = str(allocation.threads)
  # TensorFlow reads these two when its runtime starts (process_util.cc); the BLAS libraries
  # under numpy and scikit-learn read the others.
  env['TF_NUM_INTRAOP_THREADS'] = n
  env['TF_NUM_INTEROP_THREADS'] = str(min(2, allocation.threads))
  for name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    env[name] = n
  if allocation.gpu is not None:
    env['CUDA_VISIBLE_DEVICES'] = allocation.gpu
    env['TF_FORCE_GPU_ALLOW_GROWTH'] = 'true'
  return env


class Scheduler:
  """Packs runs onto a machine by their ``study.Resources``, at most ``jobs`` at a time.

  A run's threads are its ``cpus`` capped at the machine's cores (all cores when ``jobs`` is
  1: a sequential runner leaves none idle). A run fits when its threads, its memory and (on a
  machine with GPUs) its GPU share fit beside the runs going; one that does not fit an empty
  machine runs alone.
  """

  def __init__(self, machine, jobs=None):
    self.machine = machine
    self.jobs = jobs
    self.cpus_used = 0
    self.memory_used = 0.0
    self.gpu_used = {g: 0.0 for g in machine.gpus}
    self.running = 0

  def threads(self, resources):
    if self.jobs == 1:
      return self.machine.cpus
    return max(1, min(resources.cpus, self.machine.cpus))

  def allocate(self, resources):
    """An Allocation if the run fits now, else None."""
    if self.jobs is not None and self.running >= self.jobs:
      return None
    threads = self.threads(resources)
    alone = self.running == 0
    if not alone and (self.cpus_used + threads > self.machine.cpus or
                      self.memory_used + resources.memory_gb > self.machine.memory_gb):
      return None
    gpu, share = None, 0.0
    if self.machine.gpus:
      share = min(1.0, resources.gpu)
      free = sorted(self.machine.gpus, key=lambda g: self.gpu_used[g])
      gpu = free[0]
      if self.gpu_used[gpu] + share > 1.0 + 1e-9 and not alone:
        return None
      self.gpu_used[gpu] += share
    self.cpus_used += threads
    self.memory_used += resources.memory_gb
    self.running += 1
    return Allocation(threads, gpu, share, resources.memory_gb)

  def release(self, allocation):
    self.cpus_used -= allocation.threads
    self.memory_used -= allocation.memory_gb
    if allocation.gpu is not None:
      self.gpu_used[allocation.gpu] -= allocation.gpu_share
    self.running -= 1

  def capacity(self, resources):
    """How many runs of these resources the machine holds at once (the printed sizing)."""
    n = max(1, self.machine.cpus // self.threads(resources))
    n = min(n, max(1, int(self.machine.memory_gb // max(resources.memory_gb, 1e-9))))
    if self.machine.gpus:
      n = min(n, len(self.machine.gpus) * max(1, int(1.0 // min(1.0, resources.gpu) + 1e-9)))
    return min(n, self.jobs) if self.jobs else n


# ------------------------------------------------------------------ one attempt

def _set_parent_death_signal():
  """In the child, before exec: SIGTERM when the thread that started it exits (its driver
  died), so no run outlives its lease. Linux prctl(PR_SET_PDEATHSIG); elsewhere nothing."""
  if _PRCTL is not None:
    _PRCTL(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG.


def _load_prctl():
  # Looked up once in the parent: the child only makes the system call.
  if not sys.platform.startswith('linux'):
    return None
  try:
    return ctypes.CDLL(None, use_errno=True).prctl
  except (OSError, AttributeError):
    return None


_PRCTL = _load_prctl()


def execute(run, repo_dir=runs_lib.REPO_DIR, python=sys.executable, gin_bindings=(), data_dir=None,
            env=None, on_start=None, extra_record=None, commit=None):
  """Runs one attempt of a run as a subprocess and records it; the caller holds its lease.

  The output goes to ``<model_dir>/runner.log`` after a ``==== <time> <argv>`` line (through
  a local temporary file, appended when the child exits, if model_dir is not local). The
  attempt is appended to ``runner_attempts.json``; a failure is written to
  ``runner_failure.json``, and a finished run clears it.

  Args:
    on_start: called with the Popen object once the child runs (the driver stops children
      with SIGTERM through it).
    extra_record: more fields of the attempt record (threads, GPU, node).
  Returns:
    dict: returncode, seconds, output (of this attempt), record (the attempt), failure
    (the failure record, or None).
  """
  files.makedirs(run.model_dir)
  before = runs_lib.state(run)
  log_path = files.join(run.model_dir, runs_lib.RUNNER_LOG)
  cmd = runs_lib.command(run, python, gin_bindings, data_dir)
  env = dict(os.environ if env is None else env)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  local = files.is_local(log_path)
  if local:
    log_file = log_path
    offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
  else:
    fd, log_file = tempfile.mkstemp(prefix='mi_tf_runner_', suffix='.log')
    os.close(fd)
    offset = 0
  start = time.time()
  with open(log_file, 'a') as log:
    log.write(f'==== {datetime.datetime.now().isoformat(timespec="seconds")} '
              f'{" ".join(shlex.quote(a) for a in cmd)}\n')
    log.flush()
    # A new session: a Ctrl-C in the terminal reaches the driver only, which stops the child
    # with SIGTERM (checkpoint first) instead of killing it mid-write.
    proc = subprocess.Popen(cmd, cwd=str(repo_dir), stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True,
                            preexec_fn=_set_parent_death_signal)
    try:
      if on_start is not None:
        on_start(proc)
      returncode = proc.wait()
    except BaseException:  # KeyboardInterrupt (Ray's cancel), SystemExit: stop the child first.
      proc.send_signal(signal.SIGTERM)
      try:
        proc.wait(timeout=600)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
      raise
  seconds = time.time() - start
  output = files.read_bytes_from(log_file, offset).decode('utf-8', 'replace')
  if not local:
    try:
      previous = files.read_text(log_path)
    except OSError:
      previous = ''
    files.write_atomic(log_path, previous + output)
    os.remove(log_file)
  record = {'key': run.key, 'setting': run.setting.name, 'seed': run.seed,
            'start': datetime.datetime.fromtimestamp(start).isoformat(timespec='seconds'),
            'start_time': start, 'seconds': seconds, 'returncode': returncode,
            'state_before': before, 'commit': commit or runs_lib.git_info(repo_dir),
            'host': socket.gethostname(), **(extra_record or {})}
  runs_lib.append_attempt(run, record)
  failure = None
  if returncode == 0 and runs_lib.state(run) == 'finished':
    runs_lib.write_failure(run, None)
  elif returncode in runs_lib.STOPPED:
    pass  # Stopped by a signal (it checkpointed): neither a failure nor finished.
  else:
    failure = dict(record, command=cmd, log=log_path, error=error_line(output),
                   tail='\n'.join(output.splitlines()[-30:]))
    if returncode == 0:
      failure['error'] = f'exit status 0 but no {run.setting.result_file} was written'
    runs_lib.write_failure(run, failure)
  return {'returncode': returncode, 'seconds': seconds, 'output': output, 'record': record,
          'failure': failure}


# ------------------------------------------------------------------ the driver

class Stopped(SystemExit):
  """The driver got SIGINT/SIGTERM/SIGHUP and stopped its runs (they checkpointed)."""

  def __init__(self):
    super().__init__(130)


class Signals:
  """Turns SIGINT, SIGTERM and SIGHUP (unless ignored: nohup) into a flag while installed."""

  def __init__(self, on_signal):
    self.on_signal = on_signal
    self.old = {}

  def __enter__(self):
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
      if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
        continue
      try:
        self.old[sig] = signal.signal(sig, lambda signum, frame: self.on_signal())
      except ValueError:  # Not the main thread: no handlers.
        pass
    return self

  def __exit__(self, *exc):
    for sig, handler in self.old.items():
      signal.signal(sig, handler)


def eta_seconds(remaining, durations, cpus_of, machine_cpus, measured=None):
  """(seconds, runs not yet timed, runs timed by the measured table) of the remaining runs.

  Each run takes its setting's duration from ``durations`` (this runs directory's history,
  ``runs.known_durations``, updated as runs finish), else from ``measured`` (the measured
  table, ``runs.measured_durations()`` when None; {} for none); a setting in neither is not
  yet timed. The ETA is those durations times the share of the machine each run takes, as if
  the machine stays full, and at least the longest remaining run.
  """
  if measured is None:
    measured = runs_lib.measured_durations()
  known, from_table, unknown = [], 0, 0
  for r in remaining:
    name = r.setting.name
    if name in durations:
      known.append((durations[name], cpus_of(r)))
    elif name in measured:
      known.append((measured[name], cpus_of(r)))
      from_table += 1
    else:
      unknown += 1
  if not known:
    return 0.0, unknown, 0
  work = sum(d * min(c, machine_cpus) for d, c in known) / machine_cpus
  return max(work, max(d for d, _ in known)), unknown, from_table


def format_eta(seconds, unknown, from_table=0):
  """'1:23:00', '1:23:00 (3 runs from measured times) + 1 run(s) not yet timed', or
  'unknown (3 run(s) not yet timed)' when no remaining run is timed."""
  if unknown and not seconds and not from_table:
    return f'unknown ({unknown} run(s) not yet timed)'
  text = runs_lib.format_duration(seconds)
  if from_table:
    text += f' ({from_table} run{"s" if from_table != 1 else ""} from measured times)'
  return text + (f' + {unknown} run(s) not yet timed' if unknown else '')


def _skip_line(run, prefix, python, gin_bindings, data_dir):
  other = runs_lib.other_arguments(run, python, gin_bindings, data_dir)
  warning = ('' if other is None else
             f'\n    WARNING: it ran with other arguments ({" ".join(other)}); move '
             f'{run.model_dir} away to rerun it with these')
  return f'{prefix} (finished: skipped){warning}'


def state_phrase(run, before):
  step = runs_lib.checkpoint_step(run.model_dir)
  return ('new' if before == 'new' else
          f'resume from step {step}' if step is not None else 'restart: no checkpoint')


def done_line(prefix, result):
  if result['failure'] is None and result['returncode'] == 0:
    return f'{prefix} finished in {runs_lib.format_duration(result["seconds"])}'
  if result['failure'] is None:
    return f'{prefix} stopped with SIGTERM (it saved a checkpoint).'
  f = result['failure']
  return (f'{prefix} FAILED (exit status {result["returncode"]}) after '
          f'{runs_lib.format_duration(result["seconds"])}: {f["error"][:300]}\n'
          f'    log: {f["log"]}')


def print_summary(summary, begin, out, runs=()):
  """The runner's last lines: the counts, each failed run, and each finished run that learned
  nothing (final_metrics.json status 'degenerate', ``runs.degenerate_reasons``)."""
  by_key = {r.key: r for r in runs}
  degenerate = {key: reasons for key in summary['completed'] + summary['skipped']
                if key in by_key and (reasons := runs_lib.degenerate_reasons(by_key[key]))}
  print(f'Done in {runs_lib.format_duration(time.time() - begin)}: '
        f'{len(summary["completed"])} completed, {len(summary["skipped"])} already finished, '
        f'{len(summary["failed"])} failed, {len(summary["busy"])} busy'
        + (f'; {len(degenerate)} of the finished learned nothing (degenerate).' if degenerate
           else '.'), file=out, flush=True)
  for key in summary['failed']:
    where = (files.join(by_key[key].model_dir, runs_lib.FAILURE_FILE) if key in by_key
             else runs_lib.FAILURE_FILE)
    print(f'  FAILED {key}: {where}', file=out, flush=True)
  for key, reasons in degenerate.items():
    print(f'  DEGENERATE {key}: {"; ".join(reasons)} '
          f'({files.join(by_key[key].model_dir, runs_lib.FINAL_METRICS)})', file=out, flush=True)


def run_all(runs, runs_dir, repo_dir=runs_lib.REPO_DIR, python=sys.executable, gin_bindings=(),
            data_dir=None, env=None, out=sys.stdout, jobs=None, machine=None,
            lease_ttl=leases.DEFAULT_TTL):
  """Runs every unfinished run, as many at once as the machine holds (at most ``jobs``).

  Runs start in plan order; a run that does not fit beside the running ones lets later,
  smaller runs start, but not more than twice (then it waits for its room). One progress
  line per run when it starts (``[k/N] setting seed<k> (state) on <share>, elapsed, ETA``)
  and when it ends. The ETA times each setting by this runs_dir's finished runs, else (without
  gin_bindings) by the measured table ``runs.measured_durations``, and says how many runs
  it took from that table. On SIGINT/SIGTERM the running children are stopped with SIGTERM (they
  checkpoint) and SystemExit(130) is raised: rerunning the same command continues.

  Args:
    jobs: at most this many runs at once (None: as many as fit; 1: sequential).
    machine: a ``Machine`` (default: this one, ``detect_machine()``).
  Returns:
    dict of run-key lists: 'skipped' (finished before), 'completed', 'failed', 'busy'
    (another process on this machine, or another driver, is running it: left alone).
  """
  runs_dir = files.abspath(runs_dir)
  files.makedirs(runs_dir)
  machine = machine or detect_machine()
  sched = Scheduler(machine, jobs)
  summary = {'skipped': [], 'completed': [], 'failed': [], 'busy': []}
  # setting -> seconds of one run: this runs_dir's history, else the measured table (of
  # full-length runs: not used when gin_bindings change the runs, e.g. their num_steps).
  durations = runs_lib.known_durations(runs, runs_dir)
  measured = {} if gin_bindings else runs_lib.measured_durations()
  commit = runs_lib.git_info(repo_dir)
  holder = leases.Holder(ttl=lease_ttl)
  begin = time.time()
  classes = sorted({r.setting.name: r.setting.resources for r in runs}.items())
  sizing = ', '.join(sorted({f'{sched.capacity(res)} at a time of {res.cpus}-core runs'
                             for _, res in classes}))
  print(f'Machine: {machine.describe()}; jobs: {jobs or "as many as fit"} ({sizing}).',
        file=out, flush=True)

  index = {r.key: k for k, r in enumerate(runs, 1)}
  pending = []
  for run in runs:
    prefix = f'[{index[run.key]}/{len(runs)}] {run.setting.name} seed{run.seed}'
    if runs_lib.state(run) == 'finished':
      summary['skipped'].append(run.key)
      print(_skip_line(run, prefix, python, gin_bindings, data_dir), file=out, flush=True)
    else:
      pending.append(run)

  done = queue.Queue()
  procs = {}  # key -> Popen of the running children.
  running = {}  # key -> (run, allocation, thread).
  passed_over = {}
  stopping = threading.Event()

  def stop_children():
    stopping.set()
    for proc in list(procs.values()):
      try:
        proc.send_signal(signal.SIGTERM)
      except OSError:
        pass

  def worker(run, allocation, before):
    def on_start(proc):
      procs[run.key] = proc
      if stopping.is_set():  # The signal came while it was starting.
        proc.send_signal(signal.SIGTERM)

    try:
      result = execute(run, repo_dir, python, gin_bindings, data_dir,
                       child_env(allocation, env), on_start=on_start, commit=commit,
                       extra_record={'threads': allocation.threads, 'gpu': allocation.gpu})
    except Exception as e:  # pylint: disable=broad-except
      result = {'returncode': None, 'seconds': 0.0, 'output': '', 'error': e,
                'failure': {'error': f'{type(e).__name__}: {e}', 'log': ''}}
    result['state_before'] = before
    done.put((run, result))

  def start_what_fits():
    for run in list(pending):
      if stopping.is_set():
        return
      if any(n >= 2 for k, n in passed_over.items() if index[k] < index[run.key]):
        return  # An earlier run has waited for its room long enough.
      prefix = f'[{index[run.key]}/{len(runs)}] {run.setting.name} seed{run.seed}'
      allocation = sched.allocate(run.setting.resources)
      if allocation is None:
        passed_over.setdefault(run.key, 0)
        continue
      pending.remove(run)
      for k in passed_over:
        passed_over[k] += 1
      before = runs_lib.state(run)
      pid = runs_lib.live_process(run.model_dir) if before != 'finished' else None
      if before == 'finished':
        sched.release(allocation)
        summary['skipped'].append(run.key)
        print(f'{prefix} finished meanwhile by another driver: skipped', file=out, flush=True)
        continue
      if pid is not None:
        sched.release(allocation)
        summary['busy'].append(run.key)
        print(f'{prefix} busy: process {pid} is running it; left alone', file=out, flush=True)
        continue
      if not holder.acquire(run.model_dir):
        sched.release(allocation)
        summary['busy'].append(run.key)
        owner = (leases.read(run.model_dir) or {}).get('owner', '?')
        print(f'{prefix} busy: another driver ({owner}) holds {run.model_dir}', file=out,
              flush=True)
        continue
      if runs_lib.state(run) == 'finished':  # Finished between the check and the lease.
        holder.release(run.model_dir)
        sched.release(allocation)
        summary['skipped'].append(run.key)
        print(f'{prefix} finished meanwhile by another driver: skipped', file=out, flush=True)
        continue
      passed_over.pop(run.key, None)
      share = f'{allocation.threads} core(s)' + (
          f', GPU {allocation.gpu}' if allocation.gpu is not None else '')
      eta = eta_seconds(pending + [r for r, _, _ in running.values()] + [run], durations,
                        lambda r: sched.threads(r.setting.resources), machine.cpus,
                        measured)
      print(f'{prefix} ({state_phrase(run, before)}) on {share}; elapsed '
            f'{runs_lib.format_duration(time.time() - begin)}, ETA {format_eta(*eta)}',
            file=out, flush=True)
      thread = threading.Thread(target=worker, args=(run, allocation, before), daemon=True,
                                name=f'run {run.key}')
      running[run.key] = (run, allocation, thread)
      thread.start()

  try:
    with Signals(stop_children):
      start_what_fits()
      stop_deadline = None
      while running:
        try:
          run, result = done.get(timeout=0.5)
        except queue.Empty:
          if stopping.is_set():
            stop_deadline = stop_deadline or time.time() + 600
            if time.time() > stop_deadline:  # A child that does not stop: killed.
              for proc in list(procs.values()):
                proc.kill()
          continue
        _, allocation, thread = running.pop(run.key)
        thread.join()
        procs.pop(run.key, None)
        sched.release(allocation)
        holder.release(run.model_dir)
        prefix = f'[{index[run.key]}/{len(runs)}] {run.setting.name} seed{run.seed}'
        print(done_line(prefix, result), file=out, flush=True)
        if result['failure'] is None and result['returncode'] == 0:
          summary['completed'].append(run.key)
          if result['state_before'] == 'new':
            durations[run.setting.name] = result['seconds']
        elif result['failure'] is not None:
          summary['failed'].append(run.key)
        if 'error' in result:
          raise result['error']
        if not stopping.is_set():
          start_what_fits()
  finally:
    if running:  # An exception in the driver: stop the children; they checkpoint.
      stop_children()
      for _, _, thread in running.values():
        thread.join(timeout=600)
    holder.close()
  if stopping.is_set():
    print('Stopped; rerun the same command to continue where it stopped.', file=out,
          flush=True)
    raise Stopped()
  print_summary(summary, begin, out, runs)
  return summary
