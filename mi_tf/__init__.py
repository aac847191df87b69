"""mi_tf: a TF2/Keras reproduction of Tschannen et al., "On Mutual Information Maximization
for Representation Learning" (ICLR 2020).

Importing the package imports nothing else. ``mi_tf.launch`` registers every gin configurable
(``train.py`` starts runs through it); ``mi_tf.reproduce`` is the study's runner.
"""

__version__ = '0.1.0'
