#!/usr/bin/env python
"""Trains one experiment from gin files (mi_tf/scripts/train.py; installed: mi-tf-train)."""
from mi_tf.scripts import train

if __name__ == '__main__':
  train.run()
