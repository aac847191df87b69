"""mi_tf: a TF2/Keras reproduction of Tschannen et al., "On Mutual Information Maximization
for Representation Learning" (ICLR 2020).

Importing the package registers every gin configurable (encoders, critics, tasks, train).
"""

__version__ = '0.1.0'
