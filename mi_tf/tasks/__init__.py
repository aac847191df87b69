"""The experiments as ``Task`` objects that the training loop drives, one module each.

``base``: the ``Task`` interface, the finite-or-zero update, the cross-replica estimator.
``mi_maximization.MIMaximization``: Sec. 3 (max I_EST, or min |I_EST - t| in Sec. 3.3).
``adversarial.AdversarialInvertible``: the adversarially trained invertible encoder (Sec. 3.1).
``supervised.SupervisedBaseline``: encoder + linear head trained on the labels of X1.
``gaussian_toy.GaussianToy``: the 2-d Gaussian toy with (non-)i.i.d. negatives (Sec. 4).
``metric.MetricLearning``: beyond the paper, the Sec. 3 setup trained with metric-learning
objectives (K-pair, semi-hard triplet, InfoNCE over mined negatives; Sec. 4, App. C).
"""
