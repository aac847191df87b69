"""The linear probe of the paper (Sec. 3, "Evaluation"): frozen features -> test accuracy.

Protocol (from the authors' Colab): features min-max scaled with statistics of the training
set, multinomial logistic regression with scikit-learn's SAGA solver, C=10, tol=0.1,
max_iter=100, fit on all 60k training images and scored on all 10k test images. With tol=0.1
SAGA stops after a few epochs, before convergence; that is the paper's protocol and the default.
"""

import time
import warnings

import gin
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MinMaxScaler


@gin.configurable(denylist=['train_features', 'train_labels', 'test_features', 'test_labels'])
def linear_probe(train_features, train_labels, test_features, test_labels, C=10.0, tol=0.1,
                 max_iter=100, seed=0):
  """Fits the paper's linear probe and scores it.

  Args:
    train_features: [N, D] array; train_labels: [N] int.
    test_features: [M, D] array; test_labels: [M] int.
    C, tol, max_iter: LogisticRegression settings (paper: 10, 0.1, 100).
    seed: random_state of SAGA (its sampling order), for reproducible accuracies.

  Returns:
    dict with train_accuracy, test_accuracy (fractions), n_iter, seconds, feature_dim.

  Raises:
    FloatingPointError: if the features are not finite.
  """
  start = time.time()
  train_features = np.asarray(train_features, np.float64)
  test_features = np.asarray(test_features, np.float64)
  for name, f in (('train', train_features), ('test', test_features)):
    if not np.all(np.isfinite(f)):
      raise FloatingPointError(f'Linear probe: the {name} features contain NaN or inf.')
  scaler = MinMaxScaler().fit(train_features)
  clf = LogisticRegression(solver='saga', C=C, tol=tol, max_iter=max_iter, random_state=seed)
  with warnings.catch_warnings():
    # Expected with the paper's tol=0.1 / max_iter=100; the protocol is deliberately loose.
    warnings.simplefilter('ignore', ConvergenceWarning)
    clf.fit(scaler.transform(train_features), train_labels)
  return {
      'train_accuracy': float(clf.score(scaler.transform(train_features), train_labels)),
      'test_accuracy': float(clf.score(scaler.transform(test_features), test_labels)),
      'n_iter': int(np.max(clf.n_iter_)),
      'seconds': time.time() - start,
      'feature_dim': int(train_features.shape[1]),
  }
