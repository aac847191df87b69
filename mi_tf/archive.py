"""The records of finished runs, copied between runs directories without their checkpoints.

A run directory (``mi_tf.runs``) holds two kinds of files: the records that the report and the
runner read (``RECORD_FILES``: the configs, run_info.json, metrics.jsonl, the runner's
attempts and the result file) and what only a training in progress needs (checkpoints/, the
exported SavedModel, TensorBoard event files, logs). ``copy_records`` copies the first kind,
for the finished runs only, so that

- a study's results can be kept where checkpoints cannot: this repository's
  ``results/study/`` holds those of its study (a few hundred kB a run), and the report can be
  written again from them alone (``reproduce report --runs_dir=results/study``);
- a runs directory on another machine starts with the archive's finished runs, which the
  runner then skips (a run is finished when its result file is there), so that a study
  spread over machines that do not keep their disks loses at most its runs in progress.

Each file is replaced atomically and the result file (final_metrics.json, probe_result.json)
is copied last: a copy killed midway leaves the run unfinished in the target, never finished
with missing records. Nothing in the target is lost: a run that it holds finished is left as
it is ('same' when its records equal the source's, 'conflict' when they differ: remove the
target's run directory to take the source's), and a run that a live driver executes there,
or a training writes (their leases, ``mi_tf.leases``), is 'busy' and not touched. A run whose
result file is written in the source while its driver still holds it is 'running' and not
copied yet: the driver appends the runner's attempts record after the training exits, so a
copy taken then would be finished in the target without it, and differ from the source's
records once the driver is done. Files of the runs directory itself (the ``--decide`` rounds)
are copied where the target has none, and replace the target's where they extend it (a JSON
list that starts with the target's).
No TensorFlow import for local paths.
"""

import json

from mi_tf import files
from mi_tf import leases
from mi_tf import runs as runs_lib

# What the report and the runner read of a run, besides its result file (copied last).
RECORD_FILES = ('config.gin', 'operative_config.gin', 'run_info.json', 'metrics.jsonl',
                'probe_knn_result.json', runs_lib.ATTEMPTS_FILE)


def _read(path):
  return files.read_text(path) if files.isfile(path) else None


def _records(run):
  """{file name: text} of a run's record files that exist, the result file included."""
  out = {}
  for name in RECORD_FILES + (run.setting.result_file,):
    text = _read(files.join(run.model_dir, name))
    if text is not None:
      out[name] = text
  return out


def _busy(model_dir):
  """True if a live process holds one of the run's leases: a driver executing it, or a
  training writing it (``leases.TRAIN_LEASE_FILE``)."""
  for name in (leases.LEASE_FILE, leases.TRAIN_LEASE_FILE):
    record = leases.read(model_dir, name)
    if record is not None and not leases.is_stale(record):
      return True
  return False


def copy_run(source, target):
  """Copies one finished run's records from ``source`` to ``target`` (``runs.Run`` of the same
  key in two runs directories). Returns 'copied', 'same', 'conflict', 'busy', 'unfinished'
  (the source's run is not finished: nothing to copy) or 'running' (finished in the source
  but still held by its driver or training there, its records not yet complete: copied by a
  later archive)."""
  if runs_lib.state(source) != 'finished':
    return 'unfinished'
  if _busy(source.model_dir):
    return 'running'
  records = _records(source)
  if runs_lib.state(target) == 'finished':
    return 'same' if _records(target) == records else 'conflict'
  if files.isdir(target.model_dir) and _busy(target.model_dir):
    return 'busy'
  files.makedirs(target.model_dir)
  result = source.setting.result_file
  for name, text in records.items():
    if name != result:
      files.write_atomic(files.join(target.model_dir, name), text)
  files.write_atomic(files.join(target.model_dir, result), records[result])
  return 'copied'


def _extends(old, new):
  """True if the JSON text ``new`` is a list that starts with the list ``old``."""
  try:
    old, new = json.loads(old), json.loads(new)
  except ValueError:
    return False
  return isinstance(old, list) and isinstance(new, list) and new[:len(old)] == old


def copy_root_file(source_dir, target_dir, name):
  """Copies the file ``name`` of a runs directory; 'copied', 'same', 'kept' (the target's
  already extends the source's), 'conflict' or 'absent' (the source has none)."""
  text = _read(files.join(source_dir, name))
  if text is None:
    return 'absent'
  path = files.join(target_dir, name)
  old = _read(path)
  if old == text:
    return 'same'
  if old is not None and not _extends(old, text):
    return 'kept' if _extends(text, old) else 'conflict'
  files.makedirs(target_dir)
  files.write_atomic(path, text)
  return 'copied'


def copy_records(pairs, source_dir, target_dir, root_files=()):
  """Copies the finished runs' records and the runs directory's ``root_files``.

  Args:
    pairs: [(source run, target run)] (``runs.Run``, the same key in the two directories).
    source_dir, target_dir: the two runs directories.
    root_files: names of files of the runs directory itself to copy (``copy_root_file``).

  Returns:
    {outcome: [run key or file name]} over 'copied', 'same', 'conflict', 'busy', 'kept',
    'unfinished', 'running' (empty outcomes left out).
  """
  out = {}
  for name in root_files:
    outcome = copy_root_file(source_dir, target_dir, name)
    if outcome != 'absent':
      out.setdefault(outcome, []).append(name)
  for source, target in pairs:
    out.setdefault(copy_run(source, target), []).append(source.key)
  return out
