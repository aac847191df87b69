"""reproduce archive / mi_tf.archive: the finished runs' records copied without checkpoints,
nothing in the target lost, and a runs directory restored from an archive skips those runs."""

import json
import os
import socket
import time

import pytest

from mi_tf import archive
from mi_tf import files
from mi_tf import leases
from mi_tf import reproduce
from mi_tf import runs as runs_lib
from mi_tf import study
from mi_tf.report import results
from mi_tf.report import seeds as seeds_lib

SETTINGS = ['sec4_iid', 'baseline_pixels']


def _plan(runs_dir, seeds=2):
  return runs_lib.plan(study.suite_settings([], SETTINGS), seeds, str(runs_dir))


def _finish(run, accuracy=0.9):
  """A run directory as a finished run leaves it: its records, a checkpoint, an event file."""
  d = run.model_dir
  os.makedirs(d, exist_ok=True)
  if run.setting.kind == 'probe':
    files.write_atomic(os.path.join(d, 'probe_result.json'),
                       json.dumps({'test_accuracy': accuracy, 'train_accuracy': 0.95}))
    return
  os.makedirs(os.path.join(d, 'checkpoints'), exist_ok=True)
  for name, text in (('checkpoints/ckpt-2.index', 'x'), ('events.out.tfevents.1.h', 'e'),
                     ('config.gin', 'train.seed = %d\n' % run.seed),
                     ('operative_config.gin', 'GaussianToy.eval_batches = 4\n'),
                     ('run_info.json', json.dumps({'seed': run.seed, 'sessions': []})),
                     (runs_lib.ATTEMPTS_FILE, json.dumps([{'seconds': 12.0}]))):
    files.write_atomic(os.path.join(d, name), text)
  records = [{'step': s, 'split': 'eval', 'metric': m, 'value': v}
             for s in (0, 2) for m, v in (('I_EST', 1.0 + s), ('I_EST/eval_sd', 0.5),
                                          ('probe/test_accuracy', accuracy))]
  files.write_atomic(os.path.join(d, 'metrics.jsonl'),
                     ''.join(json.dumps(r) + '\n' for r in records))
  files.write_atomic(os.path.join(d, 'final_metrics.json'), json.dumps({'step': 2}))


def _start(run):
  """A run in progress: a config and a checkpoint, no result file."""
  os.makedirs(os.path.join(run.model_dir, 'checkpoints'), exist_ok=True)
  files.write_atomic(os.path.join(run.model_dir, 'config.gin'), 'train.seed = 1\n')


def _archive(src, dst, *extra):
  return reproduce.main(['archive', '--settings', ','.join(SETTINGS), '--seeds', '2',
                         '--runs_dir', str(src), '--to', str(dst), *extra])


def test_archive_copies_the_finished_records_only_and_restores_a_runs_dir(tmp_path, capsys):
  src, dst, again = tmp_path / 'runs', tmp_path / 'archive', tmp_path / 'new_machine'
  plan = _plan(src)
  for run in plan:
    (_start if run.key == 'sec4_iid/seed1' else _finish)(run)
  assert _archive(src, dst) == 0
  assert '3 copied; 1 not finished' in capsys.readouterr().out
  copied = {run.key: sorted(os.listdir(os.path.join(dst, run.setting.name, f'seed{run.seed}')))
            for run in _plan(dst) if os.path.isdir(run.model_dir)}
  assert copied == {
      'sec4_iid/seed0': ['config.gin', 'final_metrics.json', 'metrics.jsonl',
                         'operative_config.gin', 'run_info.json', 'runner_attempts.json'],
      'baseline_pixels/seed0': ['probe_result.json'],
      'baseline_pixels/seed1': ['probe_result.json']}
  # The report reads the same runs from the archive (the unfinished one is not there).
  source_runs, archived = results.load_runs(src), results.load_runs(dst)
  assert results.finished_records(archived) == results.finished_records(source_runs)
  # A new runs directory restored from the archive: the runner skips those runs.
  assert _archive(dst, again) == 0
  capsys.readouterr()
  assert {r.key: runs_lib.state(r) for r in _plan(again)} == {
      'sec4_iid/seed0': 'finished', 'baseline_pixels/seed0': 'finished',
      'baseline_pixels/seed1': 'finished', 'sec4_iid/seed1': 'new'}
  assert reproduce.main(['run', '--settings', ','.join(SETTINGS), '--seeds', '2', '--runs_dir',
                         str(again), '--dry_run']) == 0
  commands = capsys.readouterr().out.splitlines()
  assert len(commands) == 1 and 'sec4_iid/seed1' in commands[0]
  # Archiving again changes nothing.
  assert _archive(src, dst) == 0
  assert '3 already there, the same' in capsys.readouterr().out


def test_a_run_finished_differently_or_running_in_the_target_is_not_touched(tmp_path, capsys):
  src, dst = tmp_path / 'runs', tmp_path / 'archive'
  for run in _plan(src):
    _finish(run)
  target = {r.key: r for r in _plan(dst)}
  _finish(target['sec4_iid/seed0'], accuracy=0.5)  # Finished there, other numbers.
  before = files.read_text(os.path.join(target['sec4_iid/seed0'].model_dir, 'metrics.jsonl'))
  busy = target['sec4_iid/seed1']  # Being trained there now: its training holds the lease.
  _start(busy)
  files.write_atomic(os.path.join(busy.model_dir, leases.TRAIN_LEASE_FILE), json.dumps(
      {'owner': 'x', 'host': socket.gethostname(), 'pid': os.getpid(), 'ttl': 120,
       'acquired': time.time(), 'renewed': time.time()}))
  assert _archive(src, dst) == 1
  err = capsys.readouterr().err
  assert 'sec4_iid/seed0: finished differently in the target' in err
  assert 'sec4_iid/seed1: running in the target' in err
  assert files.read_text(os.path.join(target['sec4_iid/seed0'].model_dir,
                                      'metrics.jsonl')) == before
  assert runs_lib.state(busy) == 'partial'
  assert not os.path.exists(os.path.join(busy.model_dir, 'metrics.jsonl'))


def test_a_run_finished_but_still_held_by_its_driver_is_copied_only_once_released(tmp_path,
                                                                                   capsys):
  """The driver appends the runner's attempts record after the training wrote the result file
  and exited, and releases the run's lease after that: a copy taken in between would be
  finished in the archive without the attempts record (and conflict with the source later)."""
  src, dst = tmp_path / 'runs', tmp_path / 'archive'
  plan = {r.key: r for r in _plan(src)}
  for run in plan.values():
    _finish(run)
  held = plan['sec4_iid/seed1']
  os.remove(os.path.join(held.model_dir, runs_lib.ATTEMPTS_FILE))  # Not yet appended.
  driver = leases.Holder(ttl=120)
  assert driver.acquire(held.model_dir)
  try:
    assert _archive(src, dst) == 0  # Not an error: a later archive copies it.
    out = capsys.readouterr().out
    assert '3 copied' in out and '1 finished but still held by its driver' in out
    assert runs_lib.state(runs_lib.Run(held.setting, held.seed, os.path.join(
        dst, 'sec4_iid', 'seed1'))) == 'new'
    files.write_atomic(os.path.join(held.model_dir, runs_lib.ATTEMPTS_FILE),
                       json.dumps([{'seconds': 12.0}]))
  finally:
    driver.release(held.model_dir)
  assert _archive(src, dst) == 0
  assert '1 copied; 3 already there, the same' in capsys.readouterr().out
  assert os.path.isfile(os.path.join(dst, 'sec4_iid', 'seed1', runs_lib.ATTEMPTS_FILE))


def test_a_copy_killed_midway_leaves_the_run_unfinished(tmp_path, monkeypatch):
  src, dst = tmp_path / 'runs', tmp_path / 'archive'
  run = _plan(src)[0]
  _finish(run)
  target = _plan(dst)[0]
  real = files.write_atomic

  def write(path, text):
    if os.path.basename(path) == 'final_metrics.json':
      raise KeyboardInterrupt  # Killed before the result file: every other file is there.
    real(path, text)

  monkeypatch.setattr(files, 'write_atomic', write)
  with pytest.raises(KeyboardInterrupt):
    archive.copy_run(run, target)
  assert os.path.isfile(os.path.join(target.model_dir, 'metrics.jsonl'))
  assert runs_lib.state(target) != 'finished'
  monkeypatch.setattr(files, 'write_atomic', real)
  assert archive.copy_run(run, target) == 'copied' and runs_lib.state(target) == 'finished'


@pytest.mark.parametrize('source, target, outcome, result', [
    ([1, 2], None, 'copied', [1, 2]),
    ([1, 2], [1], 'copied', [1, 2]),      # The source has more rounds: they replace.
    ([1], [1, 2], 'kept', [1, 2]),        # The target has more: kept.
    ([1, 3], [1, 2], 'conflict', [1, 2]),  # Different histories: kept, reported.
    ([1], [1], 'same', [1]),
])
def test_the_rounds_file_is_copied_only_where_it_extends_the_target(tmp_path, source, target,
                                                                    outcome, result):
  src, dst = tmp_path / 'runs', tmp_path / 'archive'
  rounds = lambda ks: json.dumps([{'round': k} for k in ks])  # noqa: E731
  os.makedirs(src)
  files.write_atomic(os.path.join(src, seeds_lib.ROUNDS_FILE), rounds(source))
  if target is not None:
    os.makedirs(dst)
    files.write_atomic(os.path.join(dst, seeds_lib.ROUNDS_FILE), rounds(target))
  assert archive.copy_root_file(str(src), str(dst), seeds_lib.ROUNDS_FILE) == outcome
  assert [r['round'] for r in seeds_lib.read_rounds(str(dst))] == result


def test_bad_targets_are_one_line_errors(tmp_path, capsys):
  src = tmp_path / 'runs'
  _finish(_plan(src)[0])
  (tmp_path / 'file').write_text('x')
  assert _archive(src, tmp_path / 'file') == 2
  assert 'is a file, not a directory' in capsys.readouterr().err
  assert _archive(src, src) == 2
  assert '--to is --runs_dir itself' in capsys.readouterr().err
  assert _archive(tmp_path / 'missing', tmp_path / 'x') == 2
  assert 'does not exist' in capsys.readouterr().err
  assert not (tmp_path / 'x').exists()
