"""JSON-lines files written by appending (``metrics.jsonl``, the runner's history): the one
tolerant parser that the training loop, the runner and the report share; and the tolerant
reader of the small JSON files of a run directory.

A process killed while appending leaves a torn last line; it is skipped here (a resumed run
writes everything after its checkpoint again), as are blank lines. No TensorFlow import: the
runner and the report read these files without it (``metrics_log`` reads through tf.io.gfile
and parses with ``parse``).

Every JSON file the project writes is strict JSON (``dumps_strict``, ``write_json``): a
non-finite number is written as the string 'nan', 'inf' or '-inf' (as in metrics.jsonl), never
as the bare NaN/Infinity that Python's json module emits and other parsers refuse; float() of
the string gives the number back.
"""

import json
import math

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


def finite(obj):
  """``obj`` with every non-finite float (also a NumPy scalar) replaced by 'nan', 'inf' or
  '-inf', through dicts, lists and tuples (a tuple becomes a list)."""
  if isinstance(obj, dict):
    return {k: finite(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [finite(v) for v in obj]
  if hasattr(obj, 'dtype') and hasattr(obj, 'item') and not hasattr(obj, '__len__'):
    obj = obj.item()  # A NumPy scalar: json cannot encode most of them.
  if isinstance(obj, float) and not math.isfinite(obj):
    return str(obj)  # 'nan', 'inf', '-inf'.
  return obj


def dumps_strict(obj, **kwargs):
  """``json.dumps`` of ``finite(obj)`` with allow_nan=False: valid JSON for any parser.

  Raises:
    TypeError: ``obj`` holds something JSON cannot represent.
  """
  return json.dumps(finite(obj), allow_nan=False, **kwargs)


def write_json(path, obj, indent=2, sort_keys=False):
  """Replaces ``path`` (local or any ``mi_tf.files`` path) atomically with ``obj`` as strict
  JSON (``dumps_strict``) and a final newline."""
  files.write_atomic(path, dumps_strict(obj, indent=indent, sort_keys=sort_keys) + '\n')


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
