"""The k-NN probe (mi_tf.probe.knn_probe): scikit-learn's cosine KNeighborsClassifier on random
and real MNIST features, the blockwise computation, the temperature-weighted votes, bad
inputs, its place in the evaluations and in the probe command."""

import json

import numpy as np
import pytest
import tensorflow as tf
from sklearn.neighbors import KNeighborsClassifier

from mi_tf import data as data_lib
from mi_tf import evaluation
from mi_tf import export
from mi_tf import probe
from mi_tf import timing
from mi_tf.scripts import probe as probe_script


def _features(seed, n_train=600, n_test=300, dim=16, classes=5):
  """Random Gaussian features with labels that depend on them (so that k-NN beats chance)."""
  rng = np.random.default_rng(seed)
  centres = rng.standard_normal((classes, dim))
  y = rng.integers(0, classes, n_train + n_test)
  x = centres[y] + 1.5 * rng.standard_normal((n_train + n_test, dim))
  return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _vote_ties(train, y_tr, test, k):
  """How many test rows have two or more classes with the most votes among their k nearest."""
  unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
  top = np.argsort(-(unit(test) @ unit(train).T), axis=1, kind='stable')[:, :k]
  counts = np.stack([np.bincount(row, minlength=y_tr.max() + 1) for row in y_tr[top]])
  return int(np.sum((counts == counts.max(axis=1, keepdims=True)).sum(axis=1) > 1))


@pytest.mark.parametrize('k, classes', [(1, 5), (4, 3), (20, 5)])
def test_predictions_equal_scikit_learns_cosine_knn(k, classes):
  x_tr, y_tr, x_te, y_te = _features(k, classes=classes)
  reference = KNeighborsClassifier(n_neighbors=k, metric='cosine').fit(x_tr, y_tr)
  predicted = probe.knn_predict(x_tr, y_tr, x_te, k=k, batch_size=64)
  np.testing.assert_array_equal(predicted, reference.predict(x_te))
  result = probe.knn_probe(x_tr, y_tr, x_te, y_te, k=k)
  assert result['test_accuracy'] == reference.score(x_te, y_te)
  assert result['test_accuracy'] > 1.5 / classes  # Informative features: above chance.
  assert (result['k'], result['metric'], result['temperature']) == (k, 'cosine', None)
  assert result['feature_dim'] == 16 and result['seconds'] > 0
  if k == 4:  # Ties between classes happen, and break as scikit-learn's (smallest label).
    assert _vote_ties(x_tr, y_tr, x_te, k) >= 10


def test_train_accuracy_is_leave_one_out_as_scikit_learns_kneighbors_without_self():
  x_tr, y_tr, x_te, y_te = _features(5)
  k, n = 7, 250
  reference = KNeighborsClassifier(n_neighbors=k, metric='cosine').fit(x_tr, y_tr)
  neighbours = reference.kneighbors(return_distance=False)[:n]  # X=None: each point not itself.
  votes = np.stack([np.bincount(row, minlength=5) for row in y_tr[neighbours]])
  expected = np.mean(np.argmax(votes, axis=1) == y_tr[:n])  # argmax: the smallest label.
  result = probe.knn_probe(x_tr, y_tr, x_te, y_te, k=k, train_examples=n, batch_size=100)
  assert result['train_examples'] == n and result['train_accuracy'] == expected
  # A query's own row is left out: with k = 1 its own label would give 100%.
  one = probe.knn_probe(x_tr, y_tr, x_te, y_te, k=1, train_examples=n)
  assert one['train_accuracy'] < 0.9
  assert probe.knn_probe(x_tr, y_tr, x_te, y_te, train_examples=0)['train_accuracy'] is None
  assert probe.knn_probe(x_tr, y_tr, x_te, y_te, k=600)['train_accuracy'] is None  # k = N.


@pytest.mark.parametrize('temperature', [None, 0.07])
def test_blocks_of_any_size_give_the_one_block_result(temperature):
  x_tr, y_tr, x_te, y_te = _features(6, n_train=400, n_test=100)
  whole = probe.knn_probe(x_tr, y_tr, x_te, y_te, temperature=temperature, batch_size=10000,
                          train_examples=100)
  whole_predictions = probe.knn_predict(x_tr, y_tr, x_te, temperature=temperature,
                                        batch_size=10000)
  for batch_size in (1, 7, 64):
    np.testing.assert_array_equal(
        probe.knn_predict(x_tr, y_tr, x_te, temperature=temperature, batch_size=batch_size),
        whole_predictions)
    blocks = probe.knn_probe(x_tr, y_tr, x_te, y_te, temperature=temperature,
                             batch_size=batch_size, train_examples=100)
    assert (blocks['test_accuracy'], blocks['train_accuracy']) == (whole['test_accuracy'],
                                                                   whole['train_accuracy'])


@pytest.mark.parametrize('temperature', [0.07, 0.5])
def test_temperature_weighted_votes_equal_a_numpy_reference(temperature):
  x_tr, y_tr, x_te, _ = _features(7, classes=4)
  k = 20
  unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
  sims = unit(x_te) @ unit(x_tr).T
  top = np.argsort(-sims, axis=1, kind='stable')[:, :k]
  weights = np.exp(np.take_along_axis(sims, top, axis=1) / temperature)
  votes = np.zeros((len(x_te), 4))
  np.add.at(votes, (np.arange(len(x_te))[:, None], y_tr[top]), weights)
  expected = np.argmax(votes, axis=1)
  predicted = probe.knn_predict(x_tr, y_tr, x_te, k=k, temperature=temperature, batch_size=50)
  np.testing.assert_array_equal(predicted, expected)
  # The weights matter: some rows vote otherwise than the plain majority.
  majority = probe.knn_predict(x_tr, y_tr, x_te, k=k)
  assert np.sum(predicted != majority) >= 3


def test_zero_and_huge_features_are_normalised_like_scikit_learn():
  """An all-zero row has similarity 0 to everything (scikit-learn's normalize leaves it zero);
  rows of 1e30 (squares beyond float32) are normalised in float64."""
  x_tr, y_tr, x_te, _ = _features(8)
  x_tr, x_te = x_tr.copy(), x_te.copy()
  x_tr[3] = 0.0
  x_te[:5] = 0.0
  x_te[5:10] *= 1e30
  x_tr[10:20] *= 1e30
  reference = KNeighborsClassifier(n_neighbors=5, metric='cosine').fit(x_tr, y_tr)
  np.testing.assert_array_equal(probe.knn_predict(x_tr, y_tr, x_te, k=5)[5:],
                                reference.predict(x_te)[5:])
  # Zero queries: every similarity 0, so the 5 lowest training indices (the top_k tie rule).
  expected = np.argmax(np.bincount(y_tr[:5], minlength=5))
  assert np.all(probe.knn_predict(x_tr, y_tr, x_te, k=5)[:5] == expected)


def test_real_mnist_pixels_are_far_above_chance_and_equal_scikit_learn():
  x1_tr, _, y_tr = data_lib.eval_halves('mnist', 'train[:5000]')
  x1_te, _, y_te = data_lib.eval_halves('mnist', 'test[:1000]')
  f_tr, f_te = x1_tr.reshape(len(x1_tr), -1), x1_te.reshape(len(x1_te), -1)
  result = probe.knn_probe(f_tr, y_tr, f_te, y_te)
  assert result['test_accuracy'] > 0.8  # Chance: 0.1; measured 0.860 (top halves only).
  reference = KNeighborsClassifier(n_neighbors=20, metric='cosine').fit(f_tr, y_tr)
  assert result['test_accuracy'] == reference.score(f_te, y_te)
  assert result['train_examples'] == 1000 and result['train_accuracy'] > 0.8
  assert probe.knn_probe(f_tr, y_tr, f_te, y_te, temperature=0.07)['test_accuracy'] > 0.8


@pytest.mark.parametrize('change, message', [
    (dict(k=0), r'k must be an integer in \[1, 600\]'),
    (dict(k=601), r'k must be an integer in \[1, 600\]'),
    (dict(k=2.5), 'k must be an integer'),
    (dict(k=True), 'k must be an integer'),
    (dict(temperature=0.0), 'temperature must be None'),
    (dict(temperature=-0.07), 'temperature must be None'),
    (dict(temperature=float('nan')), 'temperature must be None'),
    (dict(batch_size=0), 'batch_size must be a positive integer'),
    (dict(test_features=np.zeros((300, 15))), 'dimension 16 but the test features 15'),
    (dict(train_features=np.zeros(600)), r'train features must be a non-empty \[N, D\]'),
    (dict(test_features=np.zeros((0, 16))), r'test features must be a non-empty \[N, D\]'),
    (dict(train_labels=np.zeros(599, np.int64)), r'train labels must have shape \[600\]'),
    (dict(test_labels=np.zeros((300, 1), np.int64)), r'test labels must have shape \[300\]'),
    (dict(train_labels=np.full(600, -1)), 'non-negative integers'),
    (dict(train_labels=np.zeros(600)), 'non-negative integers, got dtype float64'),
    (dict(train_features='nan'), 'train features'),
])
def test_bad_inputs_are_one_clear_value_error(change, message):
  x_tr, y_tr, x_te, y_te = _features(9)
  args = dict(train_features=x_tr, train_labels=y_tr, test_features=x_te, test_labels=y_te)
  args.update(change)
  with pytest.raises(ValueError, match=message):
    probe.knn_probe(**args)


@pytest.mark.parametrize('bad', [np.nan, np.inf, 1e39])  # 1e39: inf in float32.
def test_non_finite_features_are_a_value_error(bad):
  x_tr, y_tr, x_te, y_te = _features(10)
  x_te = x_te.copy()
  x_te[4, 2] = bad
  with pytest.raises(ValueError, match='test features contain NaN or inf'):
    probe.knn_probe(x_tr, y_tr, x_te, y_te)
  with pytest.raises(ValueError, match='train features contain NaN or inf'):
    probe.knn_probe(x_te, y_te, x_tr, y_tr)


def test_the_evaluations_with_the_converged_probe_add_the_knn_probe():
  x_tr, y_tr, x_te, y_te = _features(11, n_train=200, n_test=100, dim=8)
  timing.EVAL_TIMINGS.take()
  plain = evaluation.probe_metrics(x_tr, y_tr, x_te, y_te)
  assert not any(name.startswith('probe_knn/') for name in plain)
  assert 'probe_knn' not in timing.EVAL_TIMINGS.take()
  full = evaluation.probe_metrics(x_tr, y_tr, x_te, y_te, converged=True)
  direct = probe.knn_probe(x_tr, y_tr, x_te, y_te)
  assert full['probe_knn/test_accuracy'] == direct['test_accuracy']
  assert full['probe_knn/train_accuracy'] == direct['train_accuracy']
  assert full['probe_knn/seconds'] > 0 and 'probe_fast/test_accuracy' in full
  assert timing.EVAL_TIMINGS.take()['probe_knn'] > 0  # Its own part of the evaluation time.


SPLITS = {'train_split': 'train[:500]', 'test_split': 'test[:200]'}


def test_probe_saved_model_fits_the_knn_probe_on_pixels():
  r = evaluation.probe_saved_model(None, probe='knn', knn_k=5, **SPLITS)
  x1_tr, _, y_tr = data_lib.eval_halves('mnist', SPLITS['train_split'])
  x1_te, _, y_te = data_lib.eval_halves('mnist', SPLITS['test_split'])
  direct = probe.knn_probe(x1_tr.reshape(500, -1), y_tr, x1_te.reshape(200, -1), y_te, k=5)
  assert (r['protocol'], r['probe'], r['k'], r['temperature'], r['metric']) == (
      'knn', 'knn', 5, None, 'cosine')
  assert (r['test_accuracy'], r['train_accuracy']) == (direct['test_accuracy'],
                                                       direct['train_accuracy'])
  assert r['train_accuracy_examples'] == 500 and r['source'] == 'pixels'
  assert not {'C', 'tol', 'solver', 'n_iter'} & set(r)
  json.dumps(r)
  weighted = evaluation.probe_saved_model(None, probe='knn', knn_temperature=0.07, **SPLITS)
  assert (weighted['k'], weighted['temperature']) == (20, 0.07)
  with pytest.raises(ValueError, match="choose one of .*'knn'"):
    evaluation.probe_saved_model(None, probe='nearest', **SPLITS)


def test_the_probe_command_probes_an_export_with_knn(tmp_path, capsys):
  """mi-tf-probe --probe=knn on an exported encoder writes probe_knn_result.json beside it
  (probe_result.json stays the linear probe's) with the k-NN accuracy of its features."""
  tf.keras.utils.set_random_seed(0)
  encoder = tf.keras.Sequential([tf.keras.Input((14, 28, 1)), tf.keras.layers.Flatten(),
                                 tf.keras.layers.Dense(16)])
  export_dir = str(tmp_path / 'run' / 'export')
  export.export_encoder(encoder, export_dir, (14, 28, 1), {'dataset': 'mnist', 'step': 0})
  status = probe_script.main(['mi-tf-probe', f'--saved_model={export_dir}', '--probe=knn',
                              '--knn_k=7', '--train_split=train[:500]',
                              '--test_split=test[:200]'])
  assert status == 0
  assert not (tmp_path / 'run' / probe_script.RESULT_FILE).exists()
  with open(tmp_path / 'run' / probe_script.KNN_RESULT_FILE) as f:
    written = json.load(f)
  x1_tr, _, y_tr = data_lib.eval_halves('mnist', 'train[:500]')
  x1_te, _, y_te = data_lib.eval_halves('mnist', 'test[:200]')
  encode, _ = export.load_encoder(export_dir)
  direct = probe.knn_probe(evaluation.batched_features(encode, x1_tr), y_tr,
                           evaluation.batched_features(encode, x1_te), y_te, k=7)
  assert (written['k'], written['feature_dim'], written['export_step']) == (7, 16, 0)
  assert written['test_accuracy'] == direct['test_accuracy']
  assert 'leave-one-out on 500' in capsys.readouterr().out
  assert probe_script.main(['mi-tf-probe', '--pixels', '--probe=knn', '--knn_k=0']) == 2


def test_also_knn_writes_what_probe_knn_writes_beside_the_linear_result(tmp_path, capsys):
  """--also_knn (the study's pixel baselines): the linear result as without it, and beside it
  probe_knn_result.json with the numbers of --probe=knn of the same flags; refused without a
  result file or with --probe=knn."""
  splits = ['--train_split=train[:500]', '--test_split=test[:200]']
  out, knn_out = tmp_path / 'both' / 'probe_result.json', tmp_path / 'knn.json'
  out.parent.mkdir()
  assert probe_script.main(['mi-tf-probe', '--pixels', '--also_knn', '--knn_k=5', *splits,
                            f'--output={out}']) == 0
  assert 'k-NN probe test accuracy' in capsys.readouterr().out
  assert probe_script.main(['mi-tf-probe', '--pixels', '--probe=knn', '--knn_k=5', *splits,
                            f'--output={knn_out}']) == 0
  linear = evaluation.probe_saved_model(None, **SPLITS)
  written = json.loads(out.read_text())
  assert written['test_accuracy'] == linear['test_accuracy'] and 'k' not in written
  beside = json.loads((out.parent / probe_script.KNN_RESULT_FILE).read_text())
  alone = json.loads(knn_out.read_text())
  drop = lambda r: {k: v for k, v in r.items() if 'seconds' not in k}  # noqa: E731
  assert drop(beside) == drop(alone) and beside['k'] == 5
  capsys.readouterr()
  assert probe_script.main(['mi-tf-probe', '--pixels', '--also_knn', *splits]) == 2
  assert probe_script.main(['mi-tf-probe', '--pixels', '--also_knn', '--probe=knn', *splits,
                            f'--output={out}']) == 2
  assert '--also_knn needs a linear --probe' in capsys.readouterr().err
