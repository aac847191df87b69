"""JSON-lines files written by appending (``metrics.jsonl``, the runner's history): the one
tolerant parser that the training loop, the runner and the report share; and the tolerant
reader of the small JSON files of a run directory.

A process killed while appending leaves a torn last line; it is skipped here (a resumed run
writes everything after its checkpoint again), as are blank lines. No TensorFlow import: the
runner and the report read these files without it (``metrics_log`` reads through tf.io.gfile
and parses with ``parse``).
"""

import json

from mi_tf import files


def parse(text):
  """(records, intact) of a JSON-lines text: the parsed lines, skipping blank and unparsable
  ones; intact is False if a line was unparsable or the text does not end with a newline."""
  records, intact = [], not text or text.endswith('\n')
  for line in text.splitlines():
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except ValueError:
      intact = False
  return records, intact


def read_json(path, default=None):
  """A whole JSON file (local or any ``mi_tf.files`` path), or ``default`` if it is missing
  or unparsable (a run's final_metrics.json, probe_result.json, run_info.json, the runner's
  files)."""
  try:
    return json.loads(files.read_text(path))
  except (OSError, ValueError):
    return default


def read(path):
  """The records of a JSON-lines file ([] if it does not exist); see ``parse``."""
  try:
    return parse(files.read_text(path))[0]
  except FileNotFoundError:
    return []
