"""The sweep runner: suites, plan, commands, skip-finished, resume, failures, progress."""

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from conftest import GIN_DIR, REPO, TINY_BINDINGS
from mi_tf import executor
from mi_tf import launch
from mi_tf import leases
from mi_tf import metrics_log
from mi_tf import reproduce
from mi_tf import runs as runs_lib
from mi_tf import study


def test_the_suites_hold_every_experiment_gin_file():
  stems = {p.stem for p in GIN_DIR.glob('*.gin')}
  mnist = set(study.SUITES['mnist']) - set(study.PROBE_BASELINES)
  beyond = set(study.SUITES['bounds']) | set(study.SUITES['metric'])
  cifar = set(study.SUITES['cifar10']) - set(study.PROBE_BASELINES)
  assert not mnist & beyond
  assert mnist | beyond == {s for s in stems if not s.startswith('cifar10')}
  assert cifar == {s for s in stems if s.startswith('cifar10')}
  assert {'baseline_pixels', 'baseline_pixels_noisy'} <= set(study.SUITES['mnist'])
  sections = [s for name in ('baselines', 'sec3_1', 'sec3_2', 'sec3_3', 'sec4')
              for s in study.SUITES[name]]
  assert sorted(sections) == sorted(study.SUITES['mnist'])


def test_plan_is_seed_major_with_at_most_three_seeds_for_realnvp(tmp_path):
  settings = study.suite_settings(['mnist'])
  runs = runs_lib.plan(settings, 5, tmp_path)
  n = len(settings)
  # The two RealNVP settings: at most 3 seeds (the fewest a verdict needs); the others 5.
  assert len(runs) == 5 * n - 2 * 2
  assert [r.seed for r in runs[:n]] == [0] * n
  capped = [r for r in runs if r.setting.name.startswith('sec3_1_realnvp')]
  assert sorted(r.seed for r in capped) == [0, 0, 1, 1, 2, 2]
  colab = [r.seed for r in runs if r.setting.name == 'sec3_1_adversarial_colab_lr']
  assert colab == [0, 1, 2, 3, 4]  # Its verdict is reported: as many seeds as the rest.
  assert len(runs_lib.plan(settings, 2, tmp_path)) == 2 * n  # The cap only lowers.
  runs = runs_lib.plan(settings, 2, tmp_path, {'sec3_1_realnvp': 3})
  assert [r.seed for r in runs if r.setting.name == 'sec3_1_realnvp'] == [0, 1, 2]
  assert runs[0].model_dir == os.path.join(tmp_path, 'baseline_pixels', 'seed0')
  with pytest.raises(ValueError, match='Unknown suite'):
    study.suite_settings(['mnits'])
  with pytest.raises(ValueError, match='Unknown setting'):
    study.suite_settings([], ['sec4_iid,sec4_idd'])


def test_dry_run_prints_one_command_per_unfinished_run(tmp_path, capsys):
  finished = tmp_path / 'sec4_iid' / 'seed1'
  finished.mkdir(parents=True)
  (finished / 'final_metrics.json').write_text('{}')
  rc = reproduce.main(['run', '--suite=sec4', '--settings=baseline_pixels_noisy', '--seeds=2',
                       f'--runs_dir={tmp_path}', '--dry_run',
                       '--gin_bindings=train.num_steps = 4'])
  assert rc == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 5 * 2 - 1
  assert not any('sec4_iid/seed1' in line for line in lines)
  first = shlex.split(lines[0])
  assert first == ['python', '-m', 'mi_tf.scripts.train', '--gin_file=gin/sec4_noniid.gin',
                   f'--model_dir={tmp_path}/sec4_noniid/seed0', '--seed=0',
                   '--gin_bindings=train.num_steps = 4']
  probe = [line for line in lines if ' -m mi_tf.scripts.probe ' in line][0]
  assert probe.startswith(f'mkdir -p {tmp_path}/baseline_pixels_noisy/seed0 && python ')
  assert '--noise_std=0.05' in probe and '--seed=0' in probe


def test_failures_are_recorded_per_run_and_cleared(tmp_path):
  runs = runs_lib.plan(study.suite_settings([], ['sec4_iid,sec4_noniid']), 1, tmp_path)
  for run in runs:
    os.makedirs(run.model_dir)
  runs_lib.write_failure(runs[0], {'key': runs[0].key, 'returncode': 1})
  runs_lib.write_failure(runs[1], {'key': runs[1].key, 'returncode': 2})
  assert set(runs_lib.read_failures(str(tmp_path))) == {r.key for r in runs}
  runs_lib.write_failure(runs[0], None)
  assert set(runs_lib.read_failures(str(tmp_path))) == {runs[1].key}
  assert set(runs_lib.read_failures(str(tmp_path), runs[:1])) == set()
  # A runs_dir of an older version: its root failures.json is still read.
  (tmp_path / runs_lib.LEGACY_FAILURES_FILE).write_text(json.dumps({'old/seed0': {}}))
  assert set(runs_lib.read_failures(str(tmp_path))) == {runs[1].key, 'old/seed0'}


@pytest.mark.e2e  # Several processes: the e2e tier (pytest.ini).
def test_runner_skips_finished_resumes_interrupted_and_reports_a_failure(tmp_path):
  """2 settings x 2 seeds at TINY_BINDINGS: one finished (skipped), one interrupted at step
  2 (resumed), one whose directory holds another config (fails: reported, the others go
  on), one new. Three subprocesses."""
  runs_dir = tmp_path / 'runs'
  toy, mnist = 'sec4_noniid', 'sec3_2_critics_bilinear_infonce'
  settings = study.suite_settings([], [f'{toy},{mnist}'])
  runs = runs_lib.plan(settings, 2, runs_dir)
  assert [r.key for r in runs] == [f'{toy}/seed0', f'{mnist}/seed0', f'{toy}/seed1',
                                   f'{mnist}/seed1']
  bindings = list(TINY_BINDINGS)

  # What train.py does for `--gin_file=gin/<toy>.gin --seed=k --gin_bindings=...`.
  def train_in_process(seed):
    model_dir = runs_dir / toy / f'seed{seed}'
    launch.train_with_gin(str(model_dir), [str(GIN_DIR / f'{toy}.gin')],
                             bindings + [f'train.seed = {seed}'])
    return model_dir

  finished = train_in_process(0)
  finished_mtime = (finished / 'final_metrics.json').stat().st_mtime_ns
  interrupted = train_in_process(1)  # Then "killed" after the checkpoint at step 2.
  for path in interrupted.glob('checkpoints/ckpt-4.*'):
    path.unlink()
  (interrupted / 'final_metrics.json').unlink()
  assert runs_lib.state(runs[2]) == 'partial' and runs_lib.checkpoint_step(
      runs[2].model_dir) == 2
  broken = runs_dir / mnist / 'seed0'
  broken.mkdir(parents=True)
  (broken / 'config.gin').write_text('train.num_steps = 1\n')  # Another run's config.

  out = io.StringIO()
  summary = executor.run_all(runs, runs_dir, REPO, gin_bindings=bindings, out=out, jobs=1)
  text = out.getvalue()

  assert summary['skipped'] == [f'{toy}/seed0']
  assert summary['failed'] == [f'{mnist}/seed0']
  assert summary['completed'] == [f'{toy}/seed1', f'{mnist}/seed1']
  assert (finished / 'final_metrics.json').stat().st_mtime_ns == finished_mtime
  # Resumed from step 2: a second session, every evaluation exactly once.
  info = json.loads((interrupted / 'run_info.json').read_text())
  assert [s['start_step'] for s in info['sessions']] == [0, 2]
  evals = [r['step'] for r in metrics_log.read(str(interrupted))
           if r['split'] == 'eval' and r['metric'] == 'I_EST/eval']
  assert evals == [0, 2, 4]
  assert json.loads((interrupted / 'final_metrics.json').read_text())['step'] == 4
  new = runs_dir / mnist / 'seed1'
  assert json.loads((new / 'final_metrics.json').read_text())['step'] == 4
  assert (new / 'export' / 'saved_model.pb').is_file()
  assert 'train.num_steps = 4' in (new / 'config.gin').read_text()
  assert '==== ' in (new / 'runner.log').read_text()
  # The failure: recorded with its log tail, reported in the progress output.
  failures = runs_lib.read_failures(str(runs_dir))
  assert list(failures) == [f'{mnist}/seed0']
  assert failures[f'{mnist}/seed0']['returncode'] == 1
  assert 'different gin config' in failures[f'{mnist}/seed0']['error']
  assert failures[f'{mnist}/seed0']['tail']
  assert f'[1/4] {toy} seed0 (finished: skipped)' in text
  assert f'[2/4] {mnist} seed0 (resume' in text or f'[2/4] {mnist} seed0 (restart' in text
  assert f'[3/4] {toy} seed1 (resume from step 2) on 2 core(s); elapsed' in text
  assert 'ETA' in text and f'[2/4] {mnist} seed0 FAILED (exit status 1)' in text
  assert 'RunDirError' in text
  assert '2 completed, 1 already finished, 1 failed' in text
  history = runs_lib.read_history(str(runs_dir))
  assert [h['key'] for h in history] == [f'{mnist}/seed0', f'{toy}/seed1', f'{mnist}/seed1']
  rows = dict((k, s) for k, s, _ in runs_lib.status_table(runs, str(runs_dir)))
  assert rows == {f'{toy}/seed0': 'finished', f'{mnist}/seed0': 'failed',
                  f'{toy}/seed1': 'finished', f'{mnist}/seed1': 'finished'}

  # A second pass has nothing left but the failed run; with its directory fixed (moved
  # away) it would run again. Here: a pass over the finished runs only starts nothing.
  out = io.StringIO()
  again = executor.run_all([runs[0], runs[2], runs[3]], runs_dir, REPO,
                            gin_bindings=bindings, out=out)
  assert again['skipped'] == [runs[0].key, runs[2].key, runs[3].key]
  assert not again['completed'] and not again['failed']
  shutil.rmtree(broken)


def test_a_run_that_another_process_is_training_is_left_alone(tmp_path):
  settings = study.suite_settings([], ['sec4_iid'])
  run = runs_lib.plan(settings, 1, tmp_path)[0]
  os.makedirs(run.model_dir)
  (tmp_path / 'sec4_iid' / 'seed0' / 'config.gin').write_text('')  # Started by hand.
  # A stand-in for `python train.py ... --model_dir=<relative path>` started elsewhere.
  proc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)',
                           '--model_dir=sec4_iid/seed0'], cwd=str(tmp_path))
  try:
    deadline = time.time() + 10
    while runs_lib.live_process(run.model_dir) is None and time.time() < deadline:
      time.sleep(0.1)
    assert runs_lib.live_process(run.model_dir) == proc.pid
    out = io.StringIO()
    summary = executor.run_all([run], tmp_path, REPO, out=out)
    assert summary['busy'] == [run.key] and not summary['failed']
    assert f'busy: process {proc.pid} is running it' in out.getvalue()
    assert not (tmp_path / 'sec4_iid' / 'seed0' / runs_lib.RUNNER_LOG).exists()
    assert runs_lib.status_table([run], str(tmp_path))[0][1] == 'running'
  finally:
    proc.kill()
    proc.wait()
  assert runs_lib.live_process(run.model_dir) is None


def _fake_python(tmp_path, body):
  """An executable standing in for the Python of a run (it gets train.py's arguments)."""
  path = tmp_path / 'fake_python'
  path.write_text('#!/bin/bash\n' + body + '\n')
  path.chmod(0o755)
  return str(path)


def test_a_run_leased_by_another_driver_is_left_alone_and_a_stale_lease_is_broken(tmp_path):
  run = runs_lib.plan(study.suite_settings([], ['sec4_iid']), 1, tmp_path)[0]
  other = leases.Holder(owner='other-driver')
  assert other.acquire(run.model_dir)
  child = _fake_python(tmp_path, f'touch {shlex.quote(run.model_dir)}/ran; exit 0')
  out = io.StringIO()
  summary = executor.run_all([run], tmp_path, REPO, python=child, out=out)
  assert summary['busy'] == [run.key]
  assert 'another driver (other-driver) holds' in out.getvalue()
  assert not os.path.exists(os.path.join(run.model_dir, 'ran'))
  assert runs_lib.status_table([run], str(tmp_path))[0][1] == 'running'
  # The other driver dies without releasing (its heartbeat stops): after the ttl the lease is
  # stale and the run is taken over.
  other._stop.set()  # pylint: disable=protected-access
  record = leases.read(run.model_dir)
  record['renewed'] -= leases.DEFAULT_TTL + 1
  with open(os.path.join(run.model_dir, leases.LEASE_FILE), 'w') as f:
    json.dump(record, f)
  out = io.StringIO()
  summary = executor.run_all([run], tmp_path, REPO, python=child, out=out)
  assert os.path.exists(os.path.join(run.model_dir, 'ran'))
  assert summary['failed'] == [run.key]  # Exit 0 without final_metrics.json.
  assert 'no final_metrics.json was written' in out.getvalue()
  assert os.path.join(run.model_dir, runs_lib.FAILURE_FILE) in out.getvalue()
  assert leases.read(run.model_dir) is None  # Released after the attempt.
  attempts = runs_lib.read_history(str(tmp_path))
  assert [a['key'] for a in attempts] == [run.key] and attempts[0]['returncode'] == 0


def test_the_child_of_a_killed_driver_is_stopped(tmp_path):
  """A driver killed with SIGKILL (no chance to stop its children): its child gets SIGTERM
  from the kernel (parent-death signal) instead of running on without a lease."""
  run = runs_lib.plan(study.suite_settings([], ['sec4_iid']), 1, tmp_path)[0]
  marker = tmp_path / 'got_sigterm'
  child = _fake_python(tmp_path, f"trap 'touch {marker}; exit 143' TERM\n"
                                 'echo started; while true; do sleep 0.1; done')
  script = (f'import sys; sys.path.insert(0, {str(REPO)!r})\n'
            'from mi_tf import executor, runs, study\n'
            f'run = runs.plan(study.suite_settings([], ["sec4_iid"]), 1, {str(tmp_path)!r})[0]\n'
            f'executor.run_all([run], {str(tmp_path)!r}, python={child!r})\n')
  driver = subprocess.Popen([sys.executable, '-c', script])
  log = os.path.join(run.model_dir, runs_lib.RUNNER_LOG)
  deadline = time.time() + 30
  while time.time() < deadline and not (os.path.exists(log) and 'started' in open(log).read()):
    time.sleep(0.1)
  assert 'started' in open(log).read()
  driver.kill()
  driver.wait()
  deadline = time.time() + 10
  while time.time() < deadline and not marker.exists():
    time.sleep(0.1)
  assert marker.exists()


def test_a_finished_run_started_with_other_arguments_is_flagged(tmp_path):
  run = runs_lib.plan(study.suite_settings([], ['sec4_iid']), 1, tmp_path)[0]
  smoke = ('train.num_steps = 4',)
  os.makedirs(run.model_dir)
  argv = runs_lib.command(run, '/some/python', smoke, data_dir='/data')
  with open(os.path.join(run.model_dir, runs_lib.RUNNER_LOG), 'w') as f:
    f.write('==== 2026-01-01T00:00:00 ' + ' '.join(shlex.quote(a) for a in argv) + '\nlog\n')
  with open(os.path.join(run.model_dir, runs_lib.FINAL_METRICS), 'w') as f:
    f.write('{}')
  out = io.StringIO()
  summary = executor.run_all([run], tmp_path, REPO, out=out)  # The full-length command.
  assert summary['skipped'] == [run.key]
  assert 'WARNING: it ran with other arguments' in out.getvalue()
  assert '--gin_bindings=train.num_steps = 4' in out.getvalue()
  assert 'other arguments' in runs_lib.status_table([run], str(tmp_path))[0][2]
  # The same arguments (another interpreter and data directory do not count): no warning.
  assert runs_lib.other_arguments(run, sys.executable, smoke) is None
  out = io.StringIO()
  executor.run_all([run], tmp_path, REPO, gin_bindings=smoke, out=out)
  assert 'WARNING' not in out.getvalue()


def _results(model_dir):
  """A run's logged values that do not measure time: {(split, metric, step): value}."""
  return {(r['split'], r['metric'], r['step']): r['value']
          for r in metrics_log.read(str(model_dir))
          if not any(w in r['metric'] for w in ('per_sec', 'seconds', 'time/'))}


@pytest.mark.e2e  # Several processes: the e2e tier (pytest.ini).
def test_jobs_2_runs_two_at_once_with_the_results_of_sequential_runs(tmp_path):
  """Two tiny deterministic runs, two at a time: both finish, each alone in its model_dir
  (one attempt each), overlapped, and every logged value equals that of the same seed run
  sequentially (jobs=1, with both cores)."""
  settings = study.suite_settings([], ['sec4_noniid'])
  bindings = list(TINY_BINDINGS) + ['train.deterministic = True']
  summaries, plans = {}, {}
  for jobs in (2, 1):
    runs_dir = tmp_path / f'jobs{jobs}'
    plans[jobs] = runs_lib.plan(settings, 2, runs_dir)
    out = io.StringIO()
    summaries[jobs] = executor.run_all(plans[jobs], runs_dir, REPO, gin_bindings=bindings,
                                       out=out, jobs=jobs,
                                       machine=executor.Machine(2, (), 16.0))
    assert sorted(summaries[jobs]['completed']) == sorted(r.key for r in plans[jobs]), \
        out.getvalue()
  attempts = runs_lib.read_history(str(tmp_path / 'jobs2'))
  assert sorted(a['key'] for a in attempts) == sorted(r.key for r in plans[2])
  assert all(a['threads'] == 1 for a in attempts)
  spans = sorted((a['start_time'], a['start_time'] + a['seconds']) for a in attempts)
  assert any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))  # Overlapped.
  for run in plans[2]:
    log = open(os.path.join(run.model_dir, runs_lib.RUNNER_LOG)).read()
    assert log.count('==== ') == 1
  for parallel, sequential in zip(plans[2], plans[1]):
    got, want = _results(parallel.model_dir), _results(sequential.model_dir)
    assert want and got == want, parallel.key
