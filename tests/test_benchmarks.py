"""benchmarks/run_benchmarks.py's machine-load record: which other trainings were running while a
benchmark measured (BENCHMARKS.md's 'idle' vs 'under load' comes from this, not from prose)."""

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_benchmarks():
  spec = importlib.util.spec_from_file_location(
      'run_benchmarks', os.path.join(REPO, 'benchmarks', 'run_benchmarks.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='machine_load reads /proc (Linux)')
def test_machine_load_lists_running_trainings_and_not_stopped_ones():
  bench = _load_benchmarks()
  # A stand-in process whose command line looks like a training: what machine_load matches on.
  proc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)',
                           'train.py', '--gin_file=gin/x.gin'])
  try:
    time.sleep(0.5)
    load = bench.machine_load()
    assert len(load['load_average']) == 3
    assert proc.pid in [p['pid'] for p in load['other_trainings_running']]
    os.kill(proc.pid, signal.SIGSTOP)  # What measure_idle.sh does to the real trainings.
    for _ in range(50):  # The state flips to 'T' asynchronously.
      if proc.pid not in [p['pid'] for p in bench.machine_load()['other_trainings_running']]:
        break
      time.sleep(0.1)
    assert proc.pid not in [p['pid'] for p in bench.machine_load()['other_trainings_running']]
  finally:
    os.kill(proc.pid, signal.SIGCONT)
    proc.kill()
    proc.wait()


def test_the_loop_overhead_benchmark_runs_the_real_training_loop():
  """The 'overhead' section (an empty task through train_lib.train) runs; it is in the
  default sections of run_benchmarks.py."""
  bench = _load_benchmarks()
  rate = bench.empty_step_rate(10, 2)
  rate = rate[0] if isinstance(rate, tuple) else rate
  assert rate > 0
