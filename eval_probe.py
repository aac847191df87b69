#!/usr/bin/env python
"""Linear probe of an export or of pixels (mi_tf/scripts/probe.py; installed: mi-tf-probe)."""
from mi_tf.scripts import probe

if __name__ == '__main__':
  probe.run()
