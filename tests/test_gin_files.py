"""Runs EVERY experiment gin file for a few steps on a real MNIST subset and checks the run
directory (disentanglement_lib-style smoke test)."""

import json
import math

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from conftest import TINY_BINDINGS, experiment_gin_files
from mi_tf import metrics_log
from mi_tf import launch


def _scalar_tags(event_dir):
  acc = event_accumulator.EventAccumulator(str(event_dir), size_guidance={'tensors': 0})
  acc.Reload()
  return set(acc.Tags()['tensors'])


@pytest.mark.parametrize('gin_file', experiment_gin_files(), ids=lambda p: p.stem)
def test_every_gin_file_trains_and_writes_a_complete_run_dir(gin_file, tmp_path):
  model_dir = tmp_path / 'run'
  final = launch.train_with_gin(str(model_dir), [str(gin_file)], TINY_BINDINGS)

  for name in ('config.gin', 'operative_config.gin', 'run_info.json', 'metrics.jsonl',
               'final_metrics.json'):
    assert (model_dir / name).is_file(), name
  assert tf.train.latest_checkpoint(str(model_dir / 'checkpoints')).endswith('-4')
  operative = (model_dir / 'operative_config.gin').read_text()
  assert 'train.num_steps = 4' in operative

  records = metrics_log.read(str(model_dir))
  assert records, 'metrics.jsonl is empty'
  for r in records:
    assert isinstance(r['value'], float) and math.isfinite(r['value']), r
  eval_steps = sorted({r['step'] for r in records if r['split'] == 'eval'})
  assert eval_steps == [0, 2, 4]
  assert final['step'] == 4

  eval_tags = _scalar_tags(model_dir / 'eval')
  train_tags = _scalar_tags(model_dir / 'train')
  assert 'loss' in train_tags and 'steps_per_second' in train_tags
  assert {r['metric'] for r in records if r['split'] == 'eval'} <= eval_tags
  if (model_dir / 'export').exists():
    assert (model_dir / 'export' / 'saved_model.pb').is_file()
    meta = json.loads((model_dir / 'export' / 'mi_tf_metadata.json').read_text())
    assert meta['step'] == 4
