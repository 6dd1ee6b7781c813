"""``python -m facenerf.data.synthetic``: write a synthetic FaceScape-format dataset."""

import sys

from facenerf.data.synthetic import main
from facenerf.errors import run_cli

run_cli(lambda: main(sys.argv[1:]))
