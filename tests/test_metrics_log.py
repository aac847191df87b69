"""metrics.jsonl: reading past a line torn by a kill, and resuming over it."""

import json

from mi_tf import metrics_log


def _lines(records):
  return ''.join(json.dumps(r) + '\n' for r in records)


def test_a_torn_last_line_is_skipped_and_removed_on_resume(tmp_path):
  records = [{'step': s, 'split': 'train', 'metric': 'loss', 'value': float(s)}
             for s in (10, 20)]
  path = tmp_path / metrics_log.FILENAME
  # Killed while appending step 30: half a record and no newline.
  path.write_text(_lines(records) + '{"step": 30, "split": "tr')
  assert metrics_log.read(str(tmp_path)) == records
  log = metrics_log.MetricsLog(str(tmp_path))
  log.truncate_from(20)  # Resume at the checkpoint of step 20: nothing else to drop.
  log.write(30, 'train', {'loss': 30.0})
  assert [r['step'] for r in metrics_log.read(str(tmp_path))] == [10, 20, 30]
  assert path.read_text().count('\n') == 3


def test_jsonl_read_without_tensorflow_skips_a_torn_line_and_a_missing_file(tmp_path):
  # The runner's history and the report read through mi_tf.jsonl, which must agree with
  # metrics_log on the same bytes.
  from mi_tf import jsonl  # pylint: disable=g-import-not-at-top
  records = [{'key': 'a/seed0', 'seconds': 1.5}, {'key': 'a/seed1', 'seconds': 2.0}]
  path = tmp_path / 'runner_history.jsonl'
  path.write_text(_lines(records[:1]) + '\n' + _lines(records[1:]) + '{"key": "a/se')
  assert jsonl.read(path) == records
  assert jsonl.parse(path.read_text()) == (records, False)
  assert jsonl.parse(_lines(records)) == (records, True)
  assert jsonl.read(tmp_path / 'absent.jsonl') == []
