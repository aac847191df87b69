"""Parses EVERY experiment gin file and builds its task; trains the smoke set (one file per
choice a gin file makes: conftest.SMOKE_FILES) for a few steps on a real MNIST or CIFAR-10
subset and checks the run directory (disentanglement_lib-style smoke test)."""

import json
import math
import re

import gin
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from conftest import SMOKE_FILES, TINY_BINDINGS, experiment_gin_files, smoke_gin_files
from mi_tf import metrics_log
from mi_tf import launch


def _scalar_tags(event_dir):
  acc = event_accumulator.EventAccumulator(str(event_dir), size_guidance={'tensors': 0})
  acc.Reload()
  return set(acc.Tags()['tensors'])


@pytest.mark.parametrize('gin_file', experiment_gin_files(), ids=lambda p: p.stem)
def test_every_gin_file_parses_and_builds_its_task(gin_file):
  launch.parse_gin([str(gin_file)])
  task = gin.query_parameter('train.task').scoped_configurable_fn()
  assert gin.query_parameter('train.num_steps') > 0
  # The header states what the file runs and the command that runs it.
  head = gin_file.read_text().splitlines()[:8]
  assert any(f'--gin_file=gin/{gin_file.name}' in line for line in head), head
  assert any('Full length on a 2-core CPU' in line for line in head), head
  assert task.name


def _choices(stem):
  """The choices a gin file's name makes: '<dataset>:<section or kind>' and each other part
  of the name; a batch size ('b64') or target ('t2') counts as the choice of one, the
  learning rates of the authors' code ('colab_lr') as none (bindings of the same code)."""
  dataset, _, rest = stem.partition('_') if stem.startswith('cifar10_') else ('mnist', '', stem)
  m = re.match(r'(sec\d_\d|sec\d|[a-z]+)_?(.*)', rest)
  parts = [p for p in m.group(2).split('_') if p and p not in ('colab', 'lr')]
  return {f'{dataset}:{m.group(1)}'} | {
      'batch size' if re.fullmatch(r'b\d+', p) else 'target' if re.fullmatch(r't\d', p) else p
      for p in parts}


def test_the_smoke_set_trains_every_choice_of_the_gin_files():
  stems = [p.stem for p in experiment_gin_files()]
  assert set(SMOKE_FILES) <= set(stems), sorted(set(SMOKE_FILES) - set(stems))
  assert len(smoke_gin_files()) == len(SMOKE_FILES)
  every = set().union(*map(_choices, stems))
  trained = set().union(*map(_choices, SMOKE_FILES))
  assert every - trained == set(), f'no smoke file trains {sorted(every - trained)}'
  assert {'cifar10:sec3_2', 'cifar10:sec3_3', 'mnist:sec3_1', 'batch size', 'triplet',
          'tuba', 'concat', 'convnet'} <= every  # The names are read as intended.


@pytest.mark.parametrize('gin_file', smoke_gin_files(), ids=lambda p: p.stem)
def test_smoke_gin_files_train_and_write_a_complete_run_dir(gin_file, tmp_path):
  model_dir = tmp_path / 'run'
  bindings = list(TINY_BINDINGS)
  if 'MetricLearning.num_negatives' in gin_file.read_text():
    bindings.append('MetricLearning.num_negatives = 7')  # Below the tiny batch of 16.
  if 'resmlp' in gin_file.stem:  # Its Jacobians' condition numbers on 16 examples, not 128.
    bindings.append('MIMaximization.condition_number_examples = 16')
  final = launch.train_with_gin(str(model_dir), [str(gin_file)], bindings)

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
