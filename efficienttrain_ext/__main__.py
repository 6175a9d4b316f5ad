"""``python -m efficienttrain_ext ...`` (and ``torchrun -m efficienttrain_ext train ...``): the ``etrain`` command."""

import sys

from .cli import main

sys.exit(main())
