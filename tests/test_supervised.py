"""The supervised baselines on X1 labels (mi_tf/tasks/supervised.py): a known-answer check."""

import json

from conftest import GIN_DIR, TINY_BINDINGS
from mi_tf import metrics_log
from mi_tf import launch


def test_supervised_mlp_learns_the_labels_of_the_top_half(tmp_path):
  bindings = list(TINY_BINDINGS) + [
      'train.num_steps = 60', 'train.eval_every = 60', 'train.log_every = 20',
      'train.checkpoint_every = 60', 'train.batch_size = 64',
      "ImageHalves.train_split = 'train[:4096]'",
      'SupervisedBaseline.learning_rate = 1e-3']
  final = launch.train_with_gin(str(tmp_path), [str(GIN_DIR / 'baseline_supervised_mlp.gin')],
                                   bindings)
  records = metrics_log.read(str(tmp_path))
  head = {r['step']: r['value'] for r in records if r['metric'] == 'head/test_accuracy'}
  # 60 steps of 64 examples: far from the paper's 94%, far above chance (10%).
  assert head[0] < 0.3 and head[60] > 0.6, head
  assert final['probe/test_accuracy'] > 0.6
  meta = json.loads((tmp_path / 'export' / 'mi_tf_metadata.json').read_text())
  assert meta['task'] == 'supervised_baseline' and meta['encoder'] == 'MLP'
