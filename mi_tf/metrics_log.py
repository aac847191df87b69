"""The machine-readable metrics of a run: ``metrics.jsonl``, one JSON object per line,
``{"step": int, "split": "train" | "eval", "metric": str, "value": float}``.

On resume from step s, records after s and the evaluation at s are dropped first (they were
written after the checkpoint and will be written again), so a resumed run has each value
exactly once.

Records are appended (a kill while appending leaves a torn last line, which readers skip);
the truncation on resume replaces the file atomically (``mi_tf.files.write_atomic``).
"""

import json
import math
import os

import tensorflow as tf

from mi_tf import files
from mi_tf import jsonl

FILENAME = 'metrics.jsonl'

def read(model_dir_or_path):
  """All records of a metrics file (or of ``<model_dir>/metrics.jsonl``) as a list of dicts."""
  path = model_dir_or_path
  if tf.io.gfile.isdir(path):
    path = os.path.join(path, FILENAME)
  return _parse(path)[0]


def _parse(path):
  """(records, intact) of a metrics file; see ``jsonl.parse`` (a torn or blank line is skipped
  and makes it not intact)."""
  if not tf.io.gfile.exists(path):
    return [], True
  with tf.io.gfile.GFile(path) as f:
    return jsonl.parse(f.read())


class MetricsLog:
  """Appends records to ``<model_dir>/metrics.jsonl``."""

  def __init__(self, model_dir):
    self.path = os.path.join(model_dir, FILENAME)

  def truncate_from(self, step):
    """Prepares a resume at ``step``: drops records that the resumed run writes again.

    Those are every record after ``step`` and the evaluation AT ``step`` (a resumed run
    evaluates first); the training record at ``step`` was written before the checkpoint.
    Returns the records kept.
    """
    records, intact = _parse(self.path)
    kept = [r for r in records
            if r['step'] < step or (r['step'] == step and r['split'] != 'eval')]
    if len(kept) == len(records) and intact:
      return kept
    # Replaced atomically: a kill here leaves the old or the new file, both readable.
    files.write_atomic(self.path, ''.join(json.dumps(r) + '\n' for r in kept))
    return kept

  def write(self, step, split, values):
    """Appends ``values`` (dict metric -> number) at ``step``; non-scalars are skipped."""
    lines = []
    for name, value in sorted(values.items()):
      try:
        value = float(value)
      except (TypeError, ValueError):
        continue
      lines.append(json.dumps({'step': int(step), 'split': split, 'metric': name,
                               'value': value if math.isfinite(value) else str(value)}))
    with tf.io.gfile.GFile(self.path, 'a') as f:
      f.write(''.join(line + '\n' for line in lines))
