"""TensorBoard compares runs: a logdir of two tiny runs, read back by TensorBoard's own code.

The HParams rows come from the plugin's own request handlers (list_session_groups,
get_experiment) over TensorBoard's event multiplexer, as `tensorboard --logdir RUNS_DIR`
serves them; the run information text, the descriptions and the values left out of the charts
from the events files.
"""

import json
import math
import os
import sys

import pytest
import tensorflow as tf
from tensorboard import context as tb_context
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import backend_context
from tensorboard.plugins.hparams import get_experiment
from tensorboard.plugins.hparams import list_session_groups

from conftest import GIN_DIR
from mi_tf import hparams
from mi_tf import launch
from mi_tf import metrics_log
from mi_tf import provenance
from mi_tf import train_lib

SETTING = 'sec3_2_critics_bilinear_infonce'
GIN_FILES = [str(GIN_DIR / f'{SETTING}.gin'), str(GIN_DIR / 'common' / 'quick.gin')]
BINDINGS = ('train.num_steps = 20', 'train.eval_every = 10', 'train.log_every = 10',
            "ImageHalves.train_split = 'train[:2000]'",
            "ImageHalves.probe_train_split = 'train[:2000]'",
            "ImageHalves.test_split = 'test[:500]'",
            'MIMaximization.train_estimate_examples = 500',
            'converged_probe.max_iterations = 100')


@pytest.fixture(scope='module')
def runs_dir(tmp_path_factory):
  """RUNS_DIR/seed0 and RUNS_DIR/seed1: the setting at seeds 0 and 1, started with train.py's
  command line (its --gin_file flags name the setting)."""
  root = tmp_path_factory.mktemp('runs')
  argv = sys.argv
  try:
    for seed in (0, 1):
      model_dir = str(root / f'seed{seed}')
      sys.argv = (['train.py'] + [f'--gin_file={f}' for f in GIN_FILES]
                  + [f'--model_dir={model_dir}', f'--seed={seed}'])
      launch.train_with_gin(model_dir, GIN_FILES, BINDINGS + (f'train.seed = {seed}',))
  finally:
    sys.argv = argv
  return root


def _hparams_backend(logdir):
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(str(logdir))
  multiplexer.Reload()
  provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
  return backend_context.Context(base_plugin.TBContext(
      logdir=str(logdir), multiplexer=multiplexer, data_provider=provider))


def _value(v):
  kind = v.WhichOneof('kind')
  return getattr(v, kind)


def _final(model_dir):
  with open(os.path.join(model_dir, 'final_metrics.json')) as f:
    return json.load(f)


def test_hparams_tab_has_one_row_per_run_with_its_hyperparameters_and_metrics(runs_dir):
  backend = _hparams_backend(runs_dir)
  request = api_pb2.ListSessionGroupsRequest(
      start_index=0, slice_size=100, allowed_statuses=[
          api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_RUNNING])
  response = list_session_groups.Handler(tb_context.RequestContext(), backend, '',
                                         request).run()
  assert response.total_size == 2
  rows = {}
  for group in response.session_groups:
    assert len(group.sessions) == 1  # One row per run, its session the run directory.
    rows[group.sessions[0].name] = group
  assert sorted(rows) == ['seed0', 'seed1']
  for seed in (0, 1):
    group = rows[f'seed{seed}']
    params = {k: _value(v) for k, v in group.hparams.items()}
    assert params['seed'] == seed
    assert {k: params[k] for k in ('setting', 'task', 'dataset', 'encoder', 'critic',
                                   'estimator', 'precision')} == {
        'setting': SETTING, 'task': 'mi_maximization', 'dataset': 'mnist', 'encoder': 'MLP',
        'critic': 'Bilinear', 'estimator': 'infonce', 'precision': 'float32'}
    assert (params['num_steps'], params['batch_size'], params['noise_std']) == (20, 128, 0.0)
    assert params['learning_rate'] == pytest.approx(1e-4)
    assert 'target' not in params  # Maximisation: no target t.
    # The metrics are the last values of the run's eval/ and train/ scalars.
    metrics = {(m.name.group, m.name.tag): m for m in group.sessions[0].metric_values}
    final = _final(runs_dir / f'seed{seed}')
    for tag in ('probe/test_accuracy', 'probe_fast/test_accuracy', 'I_EST/test',
                'I_EST/train'):
      assert metrics[('eval', tag)].value == pytest.approx(final[tag], rel=1e-6), tag
      assert metrics[('eval', tag)].training_step == 20
    train = {r['metric']: r['value'] for r in metrics_log.read(str(runs_dir / f'seed{seed}'))
             if r['split'] == 'train' and r['step'] == 20}
    assert metrics[('train', 'loss')].value == pytest.approx(train['loss'], rel=1e-6)
  # Different seeds, different trainings.
  loss = [{(m.name.group, m.name.tag): m.value for m in rows[f'seed{s}'].sessions[0]
           .metric_values}[('train', 'loss')] for s in (0, 1)]
  assert loss[0] != loss[1]

  experiment = get_experiment.Handler(tb_context.RequestContext(), backend, '',
                                      api_pb2.GetExperimentRequest()).run()
  infos = {h.name: h for h in experiment.hparam_infos}
  assert infos['seed'].differs and not infos['estimator'].differs
  metric_names = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
  assert {('eval', 'probe/test_accuracy'), ('eval', 'probe_fast/test_accuracy'),
          ('eval', 'I_EST/test'), ('eval', 'I_EST/train'), ('train', 'loss'),
          ('train', 'I_EST')} <= metric_names


def test_run_info_text_names_command_code_strategy_host_and_start_step(runs_dir):
  acc = event_accumulator.EventAccumulator(str(runs_dir / 'seed1' / 'train'),
                                           size_guidance={event_accumulator.TENSORS: 0})
  acc.Reload()
  events = acc.Tensors(hparams.RUN_INFO_TAG)
  assert [e.step for e in events] == [0]  # One session, started at step 0.
  text = tf.make_ndarray(events[0].tensor_proto).item().decode()
  with open(runs_dir / 'seed1' / 'run_info.json') as f:
    session = json.load(f)['sessions'][0]
  assert f'--gin_file={GIN_FILES[0]}' in text and '--seed=1' in text
  assert provenance.short(session['code']) in text and provenance.code_version()['commit']
  assert f"| host | {session['host']} |" in text
  assert f"{session['strategy']} (1 replica)" in text
  assert '| start | step 0 at ' in text and 'gin-config' not in text and 'gin 0.' in text


def _events(directory):
  out = []
  for path in sorted(tf.io.gfile.glob(os.path.join(str(directory), 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      out.extend((event.step, v) for v in event.summary.value)
  return out


def test_ambiguous_tags_are_described_in_their_first_summary_only(runs_dir):
  for subdir, tag in (('train', 'I_EST'), ('eval', 'I_EST/train'), ('eval', 'I_NWJ/test')):
    values = [v for _, v in _events(runs_dir / 'seed0' / subdir) if v.tag == tag]
    assert len(values) >= 2, tag
    assert values[0].metadata.summary_description == hparams.description(tag)
    assert hparams.description(tag), tag
    assert all(not v.metadata.summary_description for v in values[1:]), tag
  assert 'mean over the log window' in hparams.description('I_EST')
  assert 'train-split examples at the evaluation' in hparams.description('I_EST/train')


def test_values_beyond_the_bound_or_not_finite_are_left_out_of_the_charts(tmp_path):
  writer = tf.summary.create_file_writer(str(tmp_path / 'eval'))
  log = metrics_log.MetricsLog(str(tmp_path))
  for step in (0, 10):
    # As an InfoNCE run's evaluation: the NWJ estimate of its critic is -9e27 nats.
    values = {'I_NCE/test': 2.5, 'I_NWJ/test': -9e27, 'I_EST/train': float('nan'),
              'I_NWJ/train': -999.0, 'loss': 5e4}
    train_lib.write_summaries(writer, step, values)
    log.write(step, 'eval', values)
  acc = event_accumulator.EventAccumulator(str(tmp_path / 'eval'), size_guidance={
      event_accumulator.TENSORS: 0})
  acc.Reload()
  tags = set(acc.Tags()['tensors'])
  # Within the bound, and tags that are not estimates (loss), are charted.
  assert {'I_NCE/test', 'I_NWJ/train', 'loss'} <= tags
  assert not tags & {'I_NWJ/test', 'I_EST/train'}
  counts = [(e.step, float(tf.make_ndarray(e.tensor_proto)))
            for e in acc.Tensors(hparams.OMITTED_COUNT_TAG)]
  assert counts == [(0, 2.0), (10, 2.0)]
  notes = acc.Tensors(hparams.OMITTED_NOTE_TAG)
  assert [e.step for e in notes] == [0]  # Named once.
  note = tf.make_ndarray(notes[0].tensor_proto).item().decode()
  assert '`I_NWJ/test` at step 0' in note and '`I_EST/train` at step 0' in note
  assert 'I_NCE' not in note and 'loss' not in note
  # metrics.jsonl keeps the raw values.
  raw = {(r['step'], r['metric']): r['value'] for r in metrics_log.read(str(tmp_path))}
  assert raw[(10, 'I_NWJ/test')] == -9e27 and raw[(0, 'I_EST/train')] == 'nan'
  assert hparams.omission('I_NCE/test', hparams.DISPLAY_BOUND_NATS) is None
  assert hparams.omission('I_NCE/test', -math.inf) is not None


def test_setting_is_the_last_gin_file_outside_common():
  assert hparams.setting_from_command(
      ['train.py', '--gin_file', 'gin/sec3_1_realnvp.gin', '--gin_file=gin/common/quick.gin',
       '--model_dir=/tmp/x']) == 'sec3_1_realnvp'
  assert hparams.setting_from_command(['pytest', '-q', 'tests']) is None
